"""Loopback test hosts: real OpenSSH servers in their own mount, PID and UTS namespaces.

Each host of a sandbox inventory gets an overlay of ``/`` with its own upper directory, so
whatever a playbook writes to the file system stays inside that host; a fresh /proc, tmpfs on
/run and /tmp, its own hostname, fresh host keys, and ``sshd -D`` listening on the host's
loopback address. Only 127.0.0.0/8 addresses are accepted: real hosts are never contacted from
here.

What is not isolated: the network namespace is the machine's (a host's processes reach whatever
the machine reaches, and its sshd listens on the machine's loopback), /dev is bind-mounted from the
machine (its disks included), and users, IPC and cgroups are the machine's. A sandbox host runs as
the machine's root: it keeps a playbook's file writes off the machine, it is not a security boundary.

``up`` records in the state folder everything it creates (state.json, with a random id that the
marker file ``.fluxops-sandbox`` repeats); ``down`` stops the recorded processes and deletes only
what that record names, and only when the marker matches. The client key and known_hosts entries go
where the inventory's variables say.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fluxops.errors import SandboxError
from fluxops.inventory import Host, Inventory
from fluxops.shell import local

SSHD = "/usr/sbin/sshd"
STATE_FILE = "state.json"
MARKER_FILE = ".fluxops-sandbox"
STATE_TMP = ".fluxops-sandbox-state.tmp"
SSH_CONFIG_FILE = "ssh_config"
HOSTS_DIR = "hosts"
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


@dataclass
class Record:
    """What ``up`` keeps in state.json: its id, what it created (written before creating it), its hosts."""

    id: str | None
    state_dirs: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    host_dirs: list[str] = field(default_factory=list)
    hosts: list[HostState] = field(default_factory=list)

    @property
    def created_state_dir(self) -> bool:
        """Did ``up`` create the state folder itself (and so may remove it when it is empty)?"""
        return bool(self.state_dirs)


@dataclass(frozen=True)
class Teardown:
    """What ``down`` did: hosts stopped, paths removed, and why anything was kept."""

    stopped: list[str]
    removed: list[str]
    kept: list[str]


def _state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def read_record(state_dir: Path) -> Record | None:
    """The record ``up`` wrote in ``state_dir`` (None when there is none)."""
    path = _state_path(state_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if isinstance(data, list):  # written by an older fluxops: hosts only, no id
            return Record(id=None, hosts=[HostState(**item) for item in data])
        return Record(
            id=str(data["id"]),
            state_dirs=[str(p) for p in data["state_dirs"]],
            created=[str(p) for p in data["created"]],
            host_dirs=[str(p) for p in data["host_dirs"]],
            hosts=[HostState(**item) for item in data["hosts"]],
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise SandboxError(f"{path}: unreadable sandbox state ({exc}); remove it after checking ps") from None


def read_state(state_dir: Path) -> list[HostState]:
    """The hosts recorded by ``up`` (empty when none run)."""
    record = read_record(state_dir)
    return record.hosts if record is not None else []


def _write_record(state_dir: Path, record: Record) -> None:
    path = _state_path(state_dir)
    tmp = state_dir / STATE_TMP
    tmp.write_text(json.dumps(asdict(record), indent=2))
    tmp.replace(path)


def _owned(state_dir: Path, record: Record) -> bool:
    """Is the marker in ``state_dir`` the one ``up`` wrote with ``record``?"""
    marker = state_dir / MARKER_FILE
    if record.id is None or marker.is_symlink() or not marker.is_file():
        return False
    return marker.read_text().strip() == record.id


def _note(state_dir: Path, record: Record, *paths: Path) -> None:
    """Record ``paths`` as created by ``up`` before creating them, so ``down`` finds them after a crash."""
    record.created.extend(str(p) for p in paths if str(p) not in record.created)
    _write_record(state_dir, record)


def _make_dirs(directory: Path, state_dir: Path, record: Record) -> None:
    """``mkdir -p`` that records each folder it creates."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        _note(state_dir, record, folder)
        folder.mkdir()


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
    state_dir = state_dir.absolute()
    previous = read_record(state_dir)
    running = [h for h in (previous.hosts if previous else []) if _alive(h.sshd_pid, h.sshd_start)]
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
    if previous is not None:
        if not _owned(state_dir, previous):
            raise SandboxError(
                f"{_state_path(state_dir)} was not written by sandbox.up in this folder (no matching "
                f"{MARKER_FILE}); run sandbox.down to stop what it records, then remove it yourself"
            )
        progress(f"removing what the previous sandbox created in {state_dir}")
        for line in _remove_created(state_dir, previous)[1]:
            progress(line)
    _refuse_foreign(state_dir, hosts)
    record = _start_record(state_dir)
    client_pub = _client_keys(hosts, state_dir, record, progress)
    started: list[HostState] = []
    procs: list[tuple[Host, subprocess.Popen[bytes], Path]] = []
    try:
        _make_dirs(state_dir / HOSTS_DIR, state_dir, record)
        for host in hosts:
            directory = state_dir / HOSTS_DIR / host.name
            record.host_dirs.append(str(directory))
            _write_record(state_dir, record)
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
            if not path.exists():
                _make_dirs(path.parent, state_dir, record)
                _note(state_dir, record, path)
            _write_known_hosts(path, entries)
        _note(state_dir, record, ssh_config_path(state_dir))
        _write_ssh_config(state_dir, hosts)
        record.hosts = started
        _write_record(state_dir, record)
    except BaseException:
        for _, proc, _ in procs:
            for child in _children(proc.pid):
                _signal(child, signal.SIGKILL)
            proc.kill()
            proc.wait()
        raise
    return started


def _client_keys(hosts: list[Host], state_dir: Path, record: Record, progress: Callable[[str], None]) -> str:
    """Generate (and record) the client keys that are missing; return their public keys."""
    client_keys = sorted({h.key_file for h in hosts if h.key_file is not None})
    for key in client_keys:
        if not key.is_file():
            progress(f"client key {key}")
            _make_dirs(key.parent, state_dir, record)
            _note(state_dir, record, key, key.with_name(key.name + ".pub"))
            _keygen(key, "fluxops-sandbox-client")
    return "".join(key.with_name(key.name + ".pub").read_text() for key in client_keys)


def _refuse_foreign(state_dir: Path, hosts: list[Host]) -> None:
    """Refuse to overwrite anything in ``state_dir`` that ``up`` would write but did not create."""
    ours = [state_dir / n for n in (STATE_FILE, STATE_TMP, MARKER_FILE)] + [ssh_config_path(state_dir)]
    ours += [state_dir / HOSTS_DIR / h.name for h in hosts]
    for path in ours:
        if path.exists() or path.is_symlink():
            raise SandboxError(
                f"{path} exists and sandbox.up did not create it; remove it or choose another "
                "sandbox folder (fluxops.sandbox.dir, INVOKE_FLUXOPS_SANDBOX_DIR)"
            )


def _start_record(state_dir: Path) -> Record:
    """Create the state folder if needed, then the marker and a record of a new id."""
    record = Record(id=uuid.uuid4().hex)
    missing = []
    folder = state_dir
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    state_dir.mkdir(parents=True, exist_ok=True)
    record.state_dirs = [str(p) for p in reversed(missing)]
    with (state_dir / MARKER_FILE).open("x") as marker:
        marker.write(record.id + "\n")
    _write_record(state_dir, record)
    return record


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
    ssh_config_path(state_dir).write_text("\n".join(blocks))


def ssh_config_path(state_dir: Path) -> Path:
    """Where ``up`` wrote the sandbox's ssh_config."""
    return state_dir / SSH_CONFIG_FILE


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


def down(state_dir: Path, *, progress: Callable[[str], None] = lambda _msg: None) -> Teardown:
    """Stop exactly the processes ``up`` started (by PID), then delete what it recorded creating.

    Nothing is deleted unless the folder's marker matches the id in state.json: a folder that
    ``up`` did not set up keeps every file, whatever its state.json says.
    """
    state_dir = state_dir.absolute()
    record = read_record(state_dir)
    if record is None:
        return Teardown(stopped=[], removed=[], kept=[])
    stopped = _stop(record.hosts, progress)
    if not _owned(state_dir, record):
        why = (
            f"deleted nothing in {state_dir}: it has no {MARKER_FILE} matching its {STATE_FILE}, "
            "so sandbox.up did not set it up"
        )
        return Teardown(stopped=stopped, removed=[], kept=[why])
    removed, kept = _remove_created(state_dir, record)
    return Teardown(stopped=stopped, removed=removed, kept=kept)


def _stop(hosts: list[HostState], progress: Callable[[str], None]) -> list[str]:
    stopped = []
    for host in hosts:
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
    return stopped


def _remove_created(state_dir: Path, record: Record) -> tuple[list[str], list[str]]:
    """Delete what ``record`` says ``up`` created, newest first; folders only when empty."""
    removed: list[str] = []
    kept: list[str] = []
    for name in record.host_dirs:
        directory = Path(name)
        own_parent = os.path.realpath(directory.parent) == os.path.realpath(state_dir / HOSTS_DIR)
        if not own_parent or directory.is_symlink():
            kept.append(f"kept {directory}: not a host folder of {state_dir}")
            continue
        _unmount_under(directory)
        if _mount_points_under(directory):
            raise SandboxError(f"{directory} still has mounts under it; deleted nothing there (see mount)")
        if directory.exists():
            shutil.rmtree(directory)
            removed.append(str(directory))
    for name in reversed(record.created):
        _remove_one(Path(name), removed, kept)
    for path in (state_dir / STATE_TMP, _state_path(state_dir), state_dir / MARKER_FILE):
        if not path.exists():
            continue
        path.unlink(missing_ok=True)
        removed.append(str(path))
    for name in reversed(record.state_dirs):
        _remove_one(Path(name), removed, kept)
    return removed, kept


def _remove_one(path: Path, removed: list[str], kept: list[str]) -> None:
    """Unlink a file, or remove a folder if it is empty (else say why it stays)."""
    if path.is_dir() and not path.is_symlink():
        try:
            path.rmdir()
        except OSError:
            kept.append(f"kept {path}: it holds files sandbox.up did not create")
            return
    elif path.exists() or path.is_symlink():
        path.unlink()
    else:
        return
    removed.append(str(path))


def _mount_points_under(directory: Path) -> list[str]:
    """Mount points (of this mount namespace) at or below ``directory``."""
    root = os.path.realpath(directory)
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1])
        if point == root or point.startswith(root + os.sep):
            points.append(point)
    return points


def _unmount_under(directory: Path) -> None:
    """Lazily unmount whatever is left mounted in a recorded host folder (normally nothing)."""
    for point in sorted(_mount_points_under(directory), reverse=True):
        local().run(["umount", "-l", point], check=False)
