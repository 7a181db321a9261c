"""The one exception tree: every error carries what a user needs to act on it."""

from __future__ import annotations


class FluxopsError(Exception):
    """Base of every error fluxops raises on purpose."""


class ConfigError(FluxopsError):
    """A project setting (invoke.yaml, environment) is missing or wrong."""


class InventoryError(FluxopsError):
    """The inventory file is unreadable or invalid; names the file, line and fix."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


class CommandError(FluxopsError):
    """A command failed, timed out or could not be started, locally or on a host."""

    def __init__(
        self,
        message: str,
        *,
        host: str,
        argv: tuple[str, ...],
        rc: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        self.host = host
        self.argv = argv
        self.rc = rc
        self.stderr_tail = stderr_tail
        text = f"[{host}] {message}: {' '.join(argv)}"
        if rc is not None:
            text += f" (exit {rc})"
        if stderr_tail:
            text += f"\n{stderr_tail}"
        super().__init__(text)


class HostKeyError(CommandError):
    """A host's SSH key is unknown or differs from the one in known_hosts."""


class LockedError(FluxopsError):
    """Another process holds the lock of a task that must not run twice at once; names the holder."""

    def __init__(self, message: str, *, lock_file: str | None = None) -> None:
        self.lock_file = lock_file
        super().__init__(message)


class SandboxError(FluxopsError):
    """The loopback sandbox hosts cannot be started, reached or stopped."""


class KeyStoreError(FluxopsError):
    """An age key file is missing, unreadable, malformed or would be overwritten; names cluster and file."""

    def __init__(self, message: str, *, cluster: str | None = None, key_file: str | None = None) -> None:
        self.cluster = cluster
        self.key_file = key_file
        super().__init__(message)


class SopsError(FluxopsError):
    """sops failed on a file: wrong or missing key, bad config; names the cluster, key file and file."""

    def __init__(
        self,
        message: str,
        *,
        cluster: str | None = None,
        key_file: str | None = None,
        path: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.key_file = key_file
        self.path = path
        super().__init__(message)


class SecretsError(FluxopsError):
    """A secret manifest or kustomization cannot be written or read; names the file and the fix."""


class PartialError(FluxopsError):
    """A task that works file by file failed part-way; ``done`` lists what it had already finished."""

    def __init__(self, message: str, *, done: list[object]) -> None:
        self.done = done
        super().__init__(message)


class RotationError(FluxopsError):
    """A key rotation cannot start, continue or finish; names the cluster and the journal."""

    def __init__(self, message: str, *, cluster: str | None = None, journal: str | None = None) -> None:
        self.cluster = cluster
        self.journal = journal
        super().__init__(message)


class LayoutError(FluxopsError):
    """The GitOps tree cannot be read or changed as asked; carries validation findings when there are."""

    def __init__(self, message: str, *, findings: tuple[object, ...] = ()) -> None:
        self.findings = findings
        super().__init__(message)


class PlaybookError(FluxopsError):
    """A playbook is unreadable or invalid, or one of its templates fails; names the file and line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
