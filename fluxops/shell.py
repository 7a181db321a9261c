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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fluxops.errors import CommandError, HostKeyError
from fluxops.masking import Secret, mask, reveal

if TYPE_CHECKING:
    import fabric
    import paramiko

    from fluxops import known_hosts
    from fluxops.inventory import Host

log = logging.getLogger("fluxops.shell")

Arg = str | os.PathLike[str]
Stdin = str | bytes | Secret | None
STDERR_TAIL_LINES = 20
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


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
        inherit_env: bool = True,
    ) -> Result:
        """Run ``argv`` here; raise CommandError on failure unless ``check`` is false.

        ``env`` is added to this process's environment; with ``inherit_env=False`` it is the command's
        whole environment instead.
        """
        from plumbum import local

        args = _check_argv(argv, self.name)
        hidden = _secret_values(stdin, env, secrets)
        started = time.perf_counter()
        given = {k: reveal(v) for k, v in (env or {}).items()}
        # the process environment as it is now (plumbum's own copy is taken once, at import)
        full_env = {**os.environ, **given} if inherit_env else given
        executable = args[0] if os.sep in args[0] else shutil.which(args[0], path=full_env.get("PATH"))
        if executable is None:
            raise CommandError(
                f"command not found: {args[0]} (install it or put it on PATH)", host=self.name, argv=args
            )
        data = _stdin_bytes(stdin)
        options = {
            "stdin": None if data is None else subprocess.PIPE,
            "env": full_env,
            "cwd": None if cwd is None else os.fspath(cwd),
        }
        try:
            if inherit_env:
                proc = local[executable][list(args[1:])].popen(**options)
            else:  # plumbum would merge its own copy of this process's environment back in
                proc = subprocess.Popen(
                    [executable, *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options
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


KILL_AFTER = 2.0  # seconds between the host's TERM and KILL of a timed-out command
LOCAL_GRACE = 3.0  # how much longer than that the client waits for a host that stopped answering
TIMED_OUT_CODES = (124, 137)  # GNU timeout's exit after TERM, after KILL
# host key algorithms of one key type, where the two differ (paramiko no longer offers ssh-rsa/SHA-1)
_KEY_TYPE_OF_ALGORITHM = {"rsa-sha2-512": "ssh-rsa", "rsa-sha2-256": "ssh-rsa"}


class _Refused(Exception):
    """The host's key failed the known_hosts check (raised inside paramiko's connect)."""

    def __init__(self, check: known_hosts.Check, key_type: str) -> None:
        super().__init__(check.verdict.value)
        self.check = check
        self.key_type = key_type


class _HostKeyPolicy:
    """paramiko's host key hook: OpenSSH's ``StrictHostKeyChecking yes``, or ``accept-new`` when asked.

    paramiko is given no host keys, so it asks this policy about every connection.
    """

    def __init__(self, path: Path, host: Host, entries: list[known_hosts.Entry], accept_new: bool) -> None:
        from fluxops import known_hosts

        self.path = path
        self.host = host
        self.name = known_hosts.host_name(host.address, host.port)
        self.entries = entries
        self.accept_new = accept_new

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        """Accept the key, record it (accept-new, unknown host only) or raise ``_Refused``."""
        from fluxops import known_hosts

        blob = key.asbytes()
        check = known_hosts.judge(self.entries, self.host.address, self.host.port, blob)
        if check.verdict is known_hosts.Verdict.OK:
            return
        if check.verdict is known_hosts.Verdict.NEW and self.accept_new:
            known_hosts.append(self.path, self.name, key.get_name(), blob)
            log.info("recorded new host key for %s (%s) in %s", self.name, key.get_name(), self.path)
            return
        raise _Refused(check, key.get_name())


def _transport_factory(known_types: list[str]) -> Callable[..., paramiko.Transport]:
    """paramiko Transports that ask first for the host key types known_hosts holds, as OpenSSH does."""
    import paramiko

    def make(sock: socket.socket, **kwargs: object) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)
        options = transport.get_security_options()
        offered = list(options.key_types)
        first = [a for a in offered if _KEY_TYPE_OF_ALGORITHM.get(a, a) in known_types]
        options.key_types = first + [a for a in offered if a not in first]
        return transport

    return make


class _Payload(io.BytesIO):
    """A remote command's stdin: sent in one piece, as bytes (binary content included)."""


def _fast_remote_runner() -> type:
    """fabric's Remote runner with invoke's 10 ms polling cut to 0.5 ms, and a timer that ends with run()."""
    import paramiko
    from fabric.runners import Remote

    class FastRemote(Remote):
        input_sleep = 0.0005

        def handle_stdin(self, input_: Any, output: Any, echo: bool = False) -> None:
            # invoke mirrors stdin one byte per poll and decodes it as text: a payload goes whole, as bytes
            if isinstance(input_, _Payload):
                try:
                    data = input_.getvalue()
                    if data:
                        self.channel.sendall(data)
                    self.close_proc_stdin()
                except (OSError, EOFError, paramiko.SSHException):
                    log.debug("the command stopped reading its stdin")  # its exit code says what happened
                return
            super().handle_stdin(input_, output, echo)

        def stop(self) -> None:
            super().stop()
            # invoke cancels the timeout timer without waiting for it: a kill() already under way would
            # otherwise send on the connection after run() returned, even after it was closed (EOFError)
            if self._timer is not None:
                self._timer.join()

        def kill(self) -> None:
            try:
                super().kill()
            except (EOFError, OSError, paramiko.SSHException):
                log.debug("connection already gone when the command's time was up")

    return FastRemote


def preload(shells: Iterable[object]) -> None:
    """Import the SSH stack now when any of ``shells`` is remote.

    Host threads that each import fabric and paramiko on first use queue behind Python's import lock
    one after another; importing once before they start lets their connections open in parallel.
    """
    if any(isinstance(s, RemoteShell) for s in shells):
        import fabric.runners  # noqa: F401
        import invoke.exceptions  # noqa: F401
        import paramiko  # noqa: F401

        from fluxops import known_hosts  # noqa: F401


def _host_label(host: Host) -> str:
    return f"{host.name} ({host.user}@{host.address} port {host.port})"


def _seconds(value: float) -> str:
    """A duration for timeout(1): never 0 (which would mean no limit), no float noise."""
    return f"{max(value, 0.001):.3f}".rstrip("0").rstrip(".")


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
        self.known_hosts = known_hosts or host.known_hosts or DEFAULT_KNOWN_HOSTS.expanduser()
        self._conn: fabric.Connection | None = None
        self._lock = threading.Lock()

    def ssh_command(self) -> tuple[str, ...]:
        """The OpenSSH command that reaches this host as fluxops does, each word shell-quoted."""
        host = self.host
        argv = ["ssh"]
        if host.port != 22:
            argv += ["-p", str(host.port)]
        if host.key_file is not None:
            argv += ["-i", str(host.key_file)]
        if self.known_hosts != DEFAULT_KNOWN_HOSTS.expanduser():
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        argv.append(f"{host.user}@{host.address}")
        return tuple(shlex.quote(a) for a in argv)

    def connection(self) -> fabric.Connection:
        """The open Connection, made on first use (host key checked before any command)."""
        with self._lock:
            if self._conn is None or not self._conn.is_connected:
                self._conn = self._open()
            return self._conn

    def _open(self) -> fabric.Connection:
        import fabric
        import paramiko

        from fluxops import known_hosts

        host = self.host
        label = _host_label(host)
        argv = self.ssh_command()
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
        name = known_hosts.host_name(host.address, host.port)
        try:
            entries = known_hosts.read(self.known_hosts)
        except OSError as exc:
            raise HostKeyError(
                f"cannot read {self.known_hosts}: {exc.strerror or exc}", host=host.name, argv=argv
            ) from None
        connect_kwargs["transport_factory"] = _transport_factory(known_hosts.known_types(entries, name))
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
        conn.client.get_host_keys().clear()  # every key is judged by the policy, none by paramiko
        conn.client.set_missing_host_key_policy(
            _HostKeyPolicy(self.known_hosts, host, entries, self.accept_new)
        )
        error: CommandError
        try:
            conn.open()
        except _Refused as refused:
            error = HostKeyError(self._refusal(refused, name), host=host.name, argv=argv)
        except paramiko.AuthenticationException:
            error = CommandError(
                f"SSH authentication as {host.user!r} failed on {label} "
                f"(key file: {host.key_file or 'ssh agent / default keys'})",
                host=host.name,
                argv=argv,
            )
        except Exception as exc:  # whatever paramiko raises is this host's failure, never the whole run's
            error = CommandError(
                f"SSH failed on {label}: {exc or type(exc).__name__}", host=host.name, argv=argv
            )
        else:
            # a channel that does not open within the connect timeout means the host went silent
            # (paramiko would wait an hour); run() then reports the lost connection
            conn.transport.channel_timeout = self.connect_timeout
            return conn
        # closing the client stops paramiko's transport thread first; closing only the socket under it
        # made that thread log "Socket exception: Bad file descriptor"
        conn.client.close()
        sock.close()
        raise error

    def _refusal(self, refused: _Refused, name: str) -> str:
        """Why the host's key was refused and what to do, naming the known_hosts lines behind it."""
        from fluxops import known_hosts

        label = _host_label(self.host)
        check = refused.check
        lines = ", ".join(str(e.line) for e in check.lines)
        if check.verdict is known_hosts.Verdict.REVOKED:
            return (
                f"the {refused.key_type} host key of {label} is marked @revoked in {self.known_hosts} "
                f"(line {lines}): a stolen key may be impersonating the host, so it is refused whatever "
                "other lines say. Give the host a new key before connecting"
            )
        if check.verdict is known_hosts.Verdict.CHANGED:
            remove = quote(["ssh-keygen", "-R", name, "-f", str(self.known_hosts)])
            return (
                f"the {refused.key_type} host key of {label} does not match {self.known_hosts} "
                f"(line {lines}): the host was reinstalled or someone is in between. If the new key is "
                f"right, remove the old one with `{remove}`"
            )
        return (
            f"host key of {label} is not in {self.known_hosts}; on first contact pass "
            "--accept-new-host-key (or set fluxops_accept_new_host_key: true for the host)"
        )

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
        """Run ``argv`` on the host; raise CommandError on failure unless ``check`` is false.

        With ``timeout``, the host runs the command under timeout(1): at the limit its whole process
        group gets TERM (KILL ``KILL_AFTER`` seconds later), so nothing of it outlives the call.
        """
        import paramiko
        from invoke.exceptions import CommandTimedOut, ThreadException

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
        if timeout is not None:
            full = ["timeout", "-k", _seconds(KILL_AFTER), _seconds(timeout), *full]
        if self.host.become and self.host.user != "root":
            full = ["sudo", "-n", "--", *full]
        command = quote(full)
        if cwd is not None:
            command = f"cd {quote([cwd])} && {command}"
        data = _stdin_bytes(stdin)
        in_stream: object = False if data is None else _Payload(data)
        # the client waits longer than the host's own limit; it gives up only on a host that went silent
        backstop = None if timeout is None else timeout + KILL_AFTER + LOCAL_GRACE
        conn = self.connection()
        started = time.perf_counter()
        try:
            res = conn.run(command, hide=True, warn=True, pty=False, in_stream=in_stream, timeout=backstop)
        except CommandTimedOut:
            res = None
        except (OSError, EOFError, paramiko.SSHException, ThreadException) as exc:
            self.close()
            masked = tuple(mask(a, hidden) for a in args)
            raise CommandError(f"connection lost: {exc}", host=self.name, argv=masked) from None
        elapsed = time.perf_counter() - started
        if timeout is not None and elapsed >= timeout:
            masked = tuple(mask(a, hidden) for a in args)
            if res is None or res.exited == -1:  # the backstop closed the channel: the host went silent
                self.close()
                raise CommandError(
                    f"timed out after {timeout}s (no answer from the host for {backstop:g}s)",
                    host=self.name,
                    argv=masked,
                )
            if res.exited in TIMED_OUT_CODES:
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
