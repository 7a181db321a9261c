"""Loopback test hosts: real OpenSSH servers in their own mount, PID and UTS namespaces.

Each host of a sandbox inventory gets an overlay of ``/`` with its own upper directory, so
whatever a playbook writes stays inside that host; a fresh /proc, tmpfs on /run and /tmp, its
own hostname, fresh host keys, and ``sshd -D`` listening on the host's loopback address.
The client key and known_hosts entries go where the inventory's variables say. Only
127.0.0.0/8 addresses are accepted: real hosts are never contacted from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from fluxops.errors import SandboxError
from fluxops.inventory import Host, Inventory
from fluxops.shell import local

SSHD = "/usr/sbin/sshd"
STATE_FILE = "state.json"
CONF_DIR = "etc/fluxops-sandbox"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
NON_INTERACTIVE_GUARD = (
    "# sandbox: stop here for non-interactive shells\ncase $- in *i*) ;; *) return;; esac\n"
)

# Runs inside the new namespaces: $1 root, $2 upper, $3 work, $4 hostname.
LAUNCH = r"""
set -e
mount -t overlay overlay -o "lowerdir=/,upperdir=$2,workdir=$3" "$1"
mount --rbind /dev "$1/dev"
mount -t proc proc "$1/proc"
mount -t tmpfs -o mode=755 tmpfs "$1/run"
mount -t tmpfs -o mode=1777 tmpfs "$1/tmp"
mkdir -p "$1/run/sshd"
hostname "$4"
exec chroot "$1" /usr/sbin/sshd -D -e -f /etc/fluxops-sandbox/sshd_config
"""

SSHD_CONFIG = """\
# sshd of sandbox host {name}
ListenAddress {address}:{port}
HostKey /{conf}/ssh_host_ed25519_key
AuthorizedKeysFile /{conf}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
UseDNS no
MaxStartups 100
MaxSessions 100
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
"""


@dataclass(frozen=True)
class HostState:
    """A running sandbox host: what ``down`` needs to stop exactly what ``up`` started."""

    name: str
    cluster: str
    address: str
    port: int
    launcher_pid: int
    sshd_pid: int
    sshd_start: str
    directory: str


@dataclass(frozen=True)
class HostStatus:
    """What ``status`` found for one host."""

    name: str
    cluster: str
    address: str
    port: int
    running: bool
    listening: bool


def capability_problems() -> list[str]:
    """Why sandbox hosts cannot run on this machine (empty when they can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("sandbox hosts need root (mount and PID namespaces, overlayfs)")
    if shutil.which("unshare") is None:
        problems.append("`unshare` is missing (Debian package util-linux)")
    if not os.access(SSHD, os.X_OK):
        problems.append(f"{SSHD} is missing (Debian package openssh-server)")
    if shutil.which("ssh-keygen") is None:
        problems.append("`ssh-keygen` is missing (Debian package openssh-client)")
    return problems


def check_hosts(hosts: Iterable[Host], inventory_path: Path) -> None:
    """Refuse any host that is not a loopback address or lacks the sandbox's key paths."""
    seen: dict[tuple[str, int], str] = {}
    for host in hosts:
        if not host.is_loopback:
            raise SandboxError(
                f"{inventory_path}: host {host.name} has address {host.address!r}; sandbox hosts must be "
                "literal 127.x.y.z addresses (real hosts are never contacted from the sandbox)"
            )
        if host.key_file is None or host.known_hosts is None:
            raise SandboxError(
                f"{inventory_path}: host {host.name} needs ansible_ssh_private_key_file and "
                "fluxops_known_hosts_file: the sandbox writes its client key and host keys there"
            )
        where = (host.address, host.port)
        if where in seen:
            raise SandboxError(
                f"{inventory_path}: hosts {seen[where]} and {host.name} share {host.address}:{host.port}"
            )
        seen[where] = host.name


def _state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def read_state(state_dir: Path) -> list[HostState]:
    """The hosts recorded by ``up`` (empty when none run)."""
    path = _state_path(state_dir)
    if not path.is_file():
        return []
    try:
        return [HostState(**item) for item in json.loads(path.read_text())]
    except (ValueError, TypeError) as exc:
        raise SandboxError(f"{path}: unreadable sandbox state ({exc}); remove it after checking ps") from None


def _write_state(state_dir: Path, hosts: list[HostState]) -> None:
    path = _state_path(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(h) for h in hosts], indent=2))
    tmp.replace(path)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against a reused PID), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def _alive(pid: int, start: str | None = None) -> bool:
    now = _start_time(pid)
    return now is not None and (start is None or now == start)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _listening(address: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _keygen(path: Path, comment: str) -> None:
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    local().run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    path.chmod(0o600)


def _prepare_host(host: Host, directory: Path, client_pub: str) -> None:
    for sub in ("upper", "work", "root"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    conf = directory / "upper" / CONF_DIR
    conf.mkdir(parents=True, exist_ok=True)
    _keygen(conf / "ssh_host_ed25519_key", f"sandbox-{host.name}")
    (conf / "authorized_keys").write_text(client_pub)
    (conf / "sshd_config").write_text(
        SSHD_CONFIG.format(name=host.name, address=host.address, port=host.port, conf=CONF_DIR)
    )
    _quiet_bashrc(host, directory / "upper")


def _quiet_bashrc(host: Host, upper: Path) -> None:
    """Inside the host only: let non-interactive shells skip the machine's ~/.bashrc work."""
    home = Path("/root") if host.user == "root" else Path("/home") / host.user
    bashrc = home / ".bashrc"
    if not bashrc.is_file():
        return
    target = upper / bashrc.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(NON_INTERACTIVE_GUARD + bashrc.read_text())


def _write_known_hosts(path: Path, entries: dict[str, str]) -> None:
    """Replace the lines of the sandbox's host names in ``path`` with fresh keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    if path.is_file():
        kept = [ln for ln in path.read_text().splitlines() if ln.split(" ", 1)[0] not in entries]
    lines = kept + [f"{name} {key}" for name, key in entries.items()]
    path.write_text("\n".join(lines) + "\n")


def _known_name(host: Host) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def _launch(host: Host, directory: Path) -> subprocess.Popen[bytes]:
    log = (directory / "sshd.log").open("ab")
    try:
        return subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--pid",
                "--uts",
                "--fork",
                "--kill-child=SIGTERM",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                LAUNCH,
                "sandbox-launch",
                str(directory / "root"),
                str(directory / "upper"),
                str(directory / "work"),
                host.name,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()


def _wait_ready(host: Host, proc: subprocess.Popen[bytes], directory: Path) -> int:
    """Wait until the host's sshd listens; return its PID (as seen from here)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (directory / "sshd.log").read_text(errors="replace").strip()[-2000:]
            raise SandboxError(f"sandbox host {host.name} did not start (exit {proc.returncode}):\n{log}")
        children = _children(proc.pid)
        if children and _listening(host.address, host.port):
            return children[0]
        time.sleep(0.02)
    raise SandboxError(
        f"sandbox host {host.name} is not listening on {host.address}:{host.port} after {START_TIMEOUT}s; "
        f"see {directory / 'sshd.log'}"
    )


def up(
    inventory: Inventory,
    state_dir: Path,
    *,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[HostState]:
    """Start a sandbox host for every host of ``inventory``; return what was started."""
    problems = capability_problems()
    if problems:
        raise SandboxError("cannot start sandbox hosts: " + "; ".join(problems))
    hosts = list(inventory.hosts)
    check_hosts(hosts, inventory.path)
    running = [h for h in read_state(state_dir) if _alive(h.sshd_pid, h.sshd_start)]
    if running:
        names = ", ".join(h.name for h in running)
        raise SandboxError(f"sandbox in {state_dir} already runs ({names}); run sandbox.down first")
    busy = [h for h in hosts if _listening(h.address, h.port)]
    if busy:
        h = busy[0]
        raise SandboxError(
            f"{h.address}:{h.port} (host {h.name}) is already in use; stop what listens there "
            "or give the sandbox inventory another ansible_port"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    client_keys = sorted({h.key_file for h in hosts if h.key_file is not None})
    for key in client_keys:
        if not key.is_file():
            progress(f"client key {key}")
            _keygen(key, "fluxops-sandbox-client")
    client_pub = "".join(key.with_name(key.name + ".pub").read_text() for key in client_keys)
    started: list[HostState] = []
    procs: list[tuple[Host, subprocess.Popen[bytes], Path]] = []
    try:
        for host in hosts:
            directory = state_dir / "hosts" / host.name
            if directory.exists():
                shutil.rmtree(directory)
            _prepare_host(host, directory, client_pub)
            progress(f"starting {host.name} on {host.address}:{host.port}")
            procs.append((host, _launch(host, directory), directory))
        known: dict[Path, dict[str, str]] = {}
        for host, proc, directory in procs:
            sshd_pid = _wait_ready(host, proc, directory)
            started.append(
                HostState(
                    name=host.name,
                    cluster=host.cluster,
                    address=host.address,
                    port=host.port,
                    launcher_pid=proc.pid,
                    sshd_pid=sshd_pid,
                    sshd_start=_start_time(sshd_pid) or "",
                    directory=str(directory),
                )
            )
            pub = (directory / "upper" / CONF_DIR / "ssh_host_ed25519_key.pub").read_text().split()
            assert host.known_hosts is not None
            known.setdefault(host.known_hosts, {})[_known_name(host)] = f"{pub[0]} {pub[1]}"
        for path, entries in known.items():
            _write_known_hosts(path, entries)
        _write_ssh_config(state_dir, hosts)
        _write_state(state_dir, started)
    except BaseException:
        for _, proc, _ in procs:
            for child in _children(proc.pid):
                _signal(child, signal.SIGKILL)
            proc.kill()
            proc.wait()
        raise
    return started


def _write_ssh_config(state_dir: Path, hosts: list[Host]) -> None:
    """An ssh_config so ``ssh -F .sandbox/ssh_config n5`` and testinfra reach the hosts by name."""
    blocks = []
    for host in hosts:
        blocks.append(
            f"Host {host.name}\n"
            f"  HostName {host.address}\n"
            f"  Port {host.port}\n"
            f"  User {host.user}\n"
            f"  IdentityFile {host.key_file}\n"
            f"  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {host.known_hosts}\n"
            f"  StrictHostKeyChecking yes\n"
            f"  LogLevel ERROR\n"
        )
    (state_dir / "ssh_config").write_text("\n".join(blocks))


def ssh_config_path(state_dir: Path) -> Path:
    """Where ``up`` wrote the sandbox's ssh_config."""
    return state_dir / "ssh_config"


def status(state_dir: Path) -> list[HostStatus]:
    """Each recorded host: is its sshd running, does it accept connections."""
    return [
        HostStatus(
            name=h.name,
            cluster=h.cluster,
            address=h.address,
            port=h.port,
            running=_alive(h.sshd_pid, h.sshd_start),
            listening=_listening(h.address, h.port),
        )
        for h in read_state(state_dir)
    ]


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _wait_gone(pid: int, start: str | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid, start):
            return True
        time.sleep(0.02)
    return not _alive(pid, start)


def down(state_dir: Path, *, progress: Callable[[str], None] = lambda _msg: None) -> list[str]:
    """Stop exactly the processes ``up`` started (by PID) and remove the sandbox state."""
    stopped = []
    for host in read_state(state_dir):
        launcher_start = _start_time(host.launcher_pid)
        if _alive(host.sshd_pid, host.sshd_start):
            progress(f"stopping {host.name} (sshd pid {host.sshd_pid})")
            # sshd is PID 1 of the host's PID namespace: when it exits, the kernel ends the rest.
            _signal(host.sshd_pid, signal.SIGTERM)
            if not _wait_gone(host.sshd_pid, host.sshd_start, STOP_TIMEOUT):
                _signal(host.sshd_pid, signal.SIGKILL)
                _wait_gone(host.sshd_pid, host.sshd_start, STOP_TIMEOUT)
        if launcher_start is not None and not _wait_gone(host.launcher_pid, launcher_start, STOP_TIMEOUT):
            raise SandboxError(f"launcher of {host.name} (pid {host.launcher_pid}) did not exit")
        stopped.append(host.name)
    _remove_state(state_dir)
    return stopped


def _remove_state(state_dir: Path) -> None:
    mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
    prefix = str(state_dir.resolve()) + os.sep
    leftover = [m for m in mounts if m.startswith(prefix)]
    for mount in sorted(leftover, reverse=True):
        local().run(["umount", "-l", mount], check=False)
    if state_dir.exists():
        shutil.rmtree(state_dir)
