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
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fluxops.errors import CommandError, HostKeyError
from fluxops.masking import Secret, mask, reveal

if TYPE_CHECKING:
    import fabric
    import paramiko

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


def _secret_values(
    stdin: Stdin, env: Mapping[str, str | Secret] | None, extra: Iterable[str | Secret]
) -> list:
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
        from plumbum import local

        args = _check_argv(argv, self.name)
        hidden = _secret_values(stdin, env, secrets)
        started = time.perf_counter()
        # the process environment as it is now (plumbum's own copy is taken once, at import)
        full_env = {**os.environ, **{k: reveal(v) for k, v in (env or {}).items()}}
        executable = args[0] if os.sep in args[0] else shutil.which(args[0], path=full_env.get("PATH"))
        if executable is None:
            raise CommandError(
                f"command not found: {args[0]} (install it or put it on PATH)", host=self.name, argv=args
            )
        data = _stdin_bytes(stdin)
        try:
            proc = local[executable][list(args[1:])].popen(
                stdin=None if data is None else subprocess.PIPE,
                env=full_env,
                cwd=None if cwd is None else os.fspath(cwd),
            )
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


class _AcceptNewPolicy:
    """OpenSSH's ``accept-new``: record an unknown host's key; a changed key is still refused."""

    def __init__(self, known_hosts: Path | None) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.known_hosts is not None:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with self.known_hosts.open("a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.info("recorded new host key for %s (%s)", hostname, key.get_name())


def _fast_remote_runner() -> type:
    """fabric's Remote runner with invoke's 10 ms input/exit polling cut to 0.5 ms."""
    from fabric.runners import Remote

    class FastRemote(Remote):
        input_sleep = 0.0005

    return FastRemote


def _host_label(host: Host) -> str:
    return f"{host.name} ({host.user}@{host.address}:{host.port})"


class RemoteShell:
    """Runs commands on one inventory host over one reused fabric Connection."""

    def __init__(
        self,
        host: Host,
        *,
        connect_timeout: float = 10.0,
        accept_new_host_key: bool = False,
        known_hosts: Path | None = None,
    ) -> None:
        self.host = host
        self.name = host.name
        self.connect_timeout = connect_timeout
        self.accept_new = accept_new_host_key or host.accept_new_host_key
        self.known_hosts = known_hosts or host.known_hosts or Path("~/.ssh/known_hosts").expanduser()
        self._conn: fabric.Connection | None = None
        self._lock = threading.Lock()

    def _host_key_name(self) -> str:
        address = self.host.address
        return address if self.host.port == 22 else f"[{address}]:{self.host.port}"

    def connection(self) -> fabric.Connection:
        """The open Connection, made on first use (host key checked before any command)."""
        with self._lock:
            if self._conn is None or not self._conn.is_connected:
                self._conn = self._open()
            return self._conn

    def _open(self) -> fabric.Connection:
        import fabric
        import paramiko

        host = self.host
        label = _host_label(host)
        argv = ("ssh", f"{host.user}@{host.address}:{host.port}")
        config = fabric.Config(
            overrides={"load_ssh_configs": False, "runners": {"remote": _fast_remote_runner()}}
        )
        connect_kwargs: dict[str, object] = {
            "banner_timeout": self.connect_timeout,
            "auth_timeout": self.connect_timeout,
        }
        if host.key_file is not None:
            if not host.key_file.is_file():
                raise CommandError(
                    f"SSH key file {host.key_file} of host {host.name} does not exist "
                    "(ansible_ssh_private_key_file in the inventory)",
                    host=host.name,
                    argv=argv,
                )
            connect_kwargs.update(key_filename=str(host.key_file), look_for_keys=False, allow_agent=False)
        try:
            sock = socket.create_connection((host.address, host.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise CommandError(
                f"cannot connect to {label}: {exc.strerror or exc}", host=host.name, argv=argv
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connect_kwargs["sock"] = sock
        conn = fabric.Connection(
            host.address,
            user=host.user,
            port=host.port,
            config=config,
            connect_kwargs=connect_kwargs,
            connect_timeout=int(self.connect_timeout),
        )
        client = conn.client
        client.get_host_keys().clear()
        if self.known_hosts.is_file():
            client.load_host_keys(str(self.known_hosts))
            client._host_keys_filename = None  # never rewrite the user's known_hosts wholesale
        if self.accept_new:
            client.set_missing_host_key_policy(_AcceptNewPolicy(self.known_hosts))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            conn.open()
        except paramiko.BadHostKeyException:
            sock.close()
            raise HostKeyError(
                f"host key of {label} does not match {self.known_hosts}: the host was reinstalled or "
                f"someone is in between. If the new key is right, remove the old one with "
                f"`ssh-keygen -R '{self._host_key_name()}' -f {self.known_hosts}`",
                host=host.name,
                argv=argv,
            ) from None
        except paramiko.AuthenticationException:
            sock.close()
            raise CommandError(
                f"SSH authentication as {host.user!r} failed on {label} "
                f"(key file: {host.key_file or 'ssh agent / default keys'})",
                host=host.name,
                argv=argv,
            ) from None
        except paramiko.SSHException as exc:
            sock.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(
                    f"host key of {label} is not in {self.known_hosts}; on first contact pass "
                    "--accept-new-host-key (or set fluxops_accept_new_host_key: true for the host)",
                    host=host.name,
                    argv=argv,
                ) from None
            raise CommandError(f"SSH failed on {label}: {exc}", host=host.name, argv=argv) from None
        except OSError as exc:
            sock.close()
            raise CommandError(f"cannot connect to {label}: {exc}", host=host.name, argv=argv) from None
        return conn

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
        """Run ``argv`` on the host; raise CommandError on failure unless ``check`` is false."""
        from invoke.exceptions import CommandTimedOut

        args = _check_argv(argv, self.name)
        if env and any(isinstance(v, Secret) for v in env.values()):
            raise CommandError(
                "a secret may not travel in a remote environment (it would show in the process list); "
                "pass it on stdin",
                host=self.name,
                argv=args,
            )
        hidden = _secret_values(stdin, env, secrets)
        full = list(args)
        if env:
            full = ["env", *(f"{k}={v}" for k, v in env.items()), *full]
        if self.host.become and self.host.user != "root":
            full = ["sudo", "-n", "--", *full]
        command = quote(full)
        if cwd is not None:
            command = f"cd {quote([cwd])} && {command}"
        data = _stdin_bytes(stdin)
        in_stream: object = False if data is None else io.StringIO(data.decode())
        conn = self.connection()
        started = time.perf_counter()
        try:
            res = conn.run(command, hide=True, warn=True, pty=False, in_stream=in_stream, timeout=timeout)
        except CommandTimedOut:
            res = None
        except (OSError, EOFError) as exc:
            self.close()
            masked = tuple(mask(a, hidden) for a in args)
            raise CommandError(f"connection lost: {exc}", host=self.name, argv=masked) from None
        # fabric ends a timed-out command by closing its channel: exit -1 once the time is up
        if res is None or (
            timeout is not None and res.exited == -1 and time.perf_counter() - started >= timeout
        ):
            masked = tuple(mask(a, hidden) for a in args)
            raise CommandError(f"timed out after {timeout}s", host=self.name, argv=masked)
        return _finish(self.name, args, res.exited, res.stdout, res.stderr, started, hidden, check)

    def close(self) -> None:
        """Close the connection (a later run opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class Connections:
    """One RemoteShell per host for a whole run; a context manager that closes them all."""

    def __init__(self, *, connect_timeout: float = 10.0, accept_new_host_key: bool = False) -> None:
        self.connect_timeout = connect_timeout
        self.accept_new_host_key = accept_new_host_key
        self._shells: dict[str, RemoteShell] = {}
        self._lock = threading.Lock()

    def get(self, host: Host) -> RemoteShell:
        """The shell of ``host``, shared by every caller in this run."""
        with self._lock:
            shell = self._shells.get(host.name)
            if shell is None:
                shell = RemoteShell(
                    host, connect_timeout=self.connect_timeout, accept_new_host_key=self.accept_new_host_key
                )
                self._shells[host.name] = shell
            return shell

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            for shell in self._shells.values():
                shell.close()
            self._shells.clear()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
