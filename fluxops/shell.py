"""The one command adapter: run an argv list locally (plumbum) or on a host (fabric).

Every command is an argv list; :func:`quote` is the only place that turns one into
a shell string. Secret values travel on stdin only and are masked in every result,
log line and error.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fluxops.errors import CommandError, HostKeyError
from fluxops.secret import Secret, mask, reveal

if TYPE_CHECKING:
    import fabric

    from fluxops.inventory import Host

log = logging.getLogger("fluxops.shell")

Arg = str | os.PathLike[str]
Stdin = str | bytes | Secret | None
STDERR_TAIL_LINES = 20


@dataclass(frozen=True)
class Result:
    """What one command did: where, what (masked), exit code, output and time taken."""

    host: str
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.rc == 0


class Shell(Protocol):
    """Something that runs argv lists: the local machine or one remote host."""

    name: str

    def run(
        self,
        argv: Sequence[Arg],
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        env: Mapping[str, str | Secret] | None = None,
        cwd: Arg | None = None,
        check: bool = True,
        secrets: Iterable[str | Secret] = (),
    ) -> Result: ...


def quote(argv: Sequence[Arg]) -> str:
    """The POSIX shell form of an argv list: the only quoting in fluxops."""
    return shlex.join(os.fspath(a) for a in argv)


def _check_argv(argv: Sequence[object], host: str) -> tuple[str, ...]:
    if not argv:
        raise CommandError("empty command", host=host, argv=())
    for arg in argv:
        if isinstance(arg, Secret):
            raise CommandError(
                "a secret value may not be put on a command line; pass it on stdin",
                host=host,
                argv=tuple(str(a) for a in argv),
            )
        if not isinstance(arg, str | os.PathLike):
            raise CommandError(f"argument {arg!r} is not a string", host=host, argv=())
    return tuple(os.fspath(a) for a in argv)  # type: ignore[arg-type]


def _secret_values(stdin: Stdin, env: Mapping[str, str | Secret] | None, extra: Iterable[str | Secret]) -> list:
    values: list[str | Secret] = list(extra)
    if isinstance(stdin, Secret):
        values.append(stdin)
    if env:
        values.extend(v for v in env.values() if isinstance(v, Secret))
    return values


def _tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _finish(
    host: str,
    argv: tuple[str, ...],
    rc: int,
    stdout: str,
    stderr: str,
    started: float,
    secrets: list,
    check: bool,
) -> Result:
    masked = tuple(mask(a, secrets) for a in argv)
    result = Result(
        host=host,
        argv=masked,
        rc=rc,
        stdout=mask(stdout, secrets),
        stderr=mask(stderr, secrets),
        duration=time.perf_counter() - started,
    )
    log.debug("[%s] %s -> rc=%d in %.1f ms", host, quote(masked), rc, result.duration * 1000)
    if check and rc != 0:
        raise CommandError("command failed", host=host, argv=masked, rc=rc, stderr_tail=_tail(result.stderr))
    return result


def _stdin_bytes(stdin: Stdin) -> bytes | None:
    if stdin is None:
        return None
    if isinstance(stdin, bytes):
        return stdin
    return reveal(stdin).encode()


class LocalShell:
    """Runs commands on this machine through plumbum."""

    name = "local"

    def run(
        self,
        argv: Sequence[Arg],
        *,
        stdin: Stdin = None,
        timeout: float | None = None,
        env: Mapping[str, str | Secret] | None = None,
        cwd: Arg | None = None,
        check: bool = True,
        secrets: Iterable[str | Secret] = (),
    ) -> Result:
        """Run ``argv`` here; raise CommandError on failure unless ``check`` is false."""
        from plumbum import CommandNotFound, local

        args = _check_argv(argv, self.name)
        hidden = _secret_values(stdin, env, secrets)
        started = time.perf_counter()
        try:
            cmd = local[args[0]][list(args[1:])]
        except CommandNotFound:
            raise CommandError(
                f"command not found: {args[0]} (install it or put it on PATH)", host=self.name, argv=args
            ) from None
        if env:
            cmd = cmd.with_env(**{k: reveal(v) for k, v in env.items()})
        if cwd is not None:
            cmd = cmd.with_cwd(os.fspath(cwd))
        data = _stdin_bytes(stdin)
        try:
            proc = cmd.popen(stdin=None if data is None else subprocess.PIPE)
        except OSError as exc:
            raise CommandError(f"cannot start: {exc}", host=self.name, argv=args) from exc
        try:
            out, err = proc.communicate(input=data, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            masked = tuple(mask(a, hidden) for a in args)
            raise CommandError(f"timed out after {timeout}s", host=self.name, argv=masked) from None
        stdout = out.decode(errors="replace") if isinstance(out, bytes) else out or ""
        stderr = err.decode(errors="replace") if isinstance(err, bytes) else err or ""
        return _finish(self.name, args, proc.returncode, stdout, stderr, started, hidden, check)


LOCAL = LocalShell()


def local() -> LocalShell:
    """The shell of this machine."""
    return LOCAL
