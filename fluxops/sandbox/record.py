"""The state folder's record: what ``up`` created, so that ``down`` removes exactly that.

``up`` writes the marker file ``.fluxops-sandbox`` (a random id) and ``state.json`` (the same id,
every file and folder it creates, the fence routes it adds and the hosts it starts). Each entry is
written before the thing it names is created, so a crashed ``up`` is still cleaned up. ``down``
deletes only what the record names, and only when the marker matches it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fluxops.errors import SandboxError

STATE_FILE = "state.json"
MARKER_FILE = ".fluxops-sandbox"
STATE_TMP = ".fluxops-sandbox-state.tmp"
HOSTS_DIR = "hosts"


@dataclass(frozen=True)
class HostState:
    """A started sandbox host: what ``down`` needs to stop exactly it and remove exactly its link."""

    name: str
    cluster: str
    address: str  # the host's own address, inside its network namespace
    port: int
    machine: str  # systemd-nspawn's machine name, unique per sandbox run
    veth: str  # the machine's end of the host's veth pair
    machine_address: str  # the machine's address on that veth
    network: str  # the /30 both addresses belong to
    directory: str  # the host folder: upper, work and the overlay's mount point
    mount_point: str  # where the overlay is mounted (in the container's private mount namespace)
    nspawn_pid: int
    nspawn_start: str  # the kernel's start time of that PID, against PID reuse
    init_pid: int = 0  # the host's PID 1 (systemd) as seen from the machine; 0 until it runs
    init_start: str = ""
    cgroups: list[str] = field(default_factory=list)  # the host's own cgroup folders, made by up


@dataclass
class Record:
    """What ``up`` keeps in state.json: its id, what it created (written before creating it), its hosts."""

    id: str | None
    state_dirs: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    host_dirs: list[str] = field(default_factory=list)
    fences: list[str] = field(default_factory=list)  # networks given an `unreachable` route by up
    hosts: list[HostState] = field(default_factory=list)

    @property
    def created_state_dir(self) -> bool:
        """Did ``up`` create the state folder itself (and so may remove it when it is empty)?"""
        return bool(self.state_dirs)


def state_path(state_dir: Path) -> Path:
    """Where the record of ``state_dir`` lives."""
    return state_dir / STATE_FILE


def read_record(state_dir: Path) -> Record | None:
    """The record ``up`` wrote in ``state_dir`` (None when there is none)."""
    path = state_path(state_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if isinstance(data, list) or any("sshd_pid" in item for item in data.get("hosts", [])):
            pids = [item.get("sshd_pid") for item in (data if isinstance(data, list) else data["hosts"])]
            raise SandboxError(
                f"{path} was written by an older fluxops (sshd chrooted on loopback, sshd pids "
                f"{', '.join(str(p) for p in pids)}); stop those processes if they still run (check ps), "
                "then remove the folder yourself"
            )
        return Record(
            id=str(data["id"]),
            state_dirs=[str(p) for p in data["state_dirs"]],
            created=[str(p) for p in data["created"]],
            host_dirs=[str(p) for p in data["host_dirs"]],
            fences=[str(n) for n in data.get("fences", [])],
            hosts=[HostState(**item) for item in data["hosts"]],
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SandboxError(f"{path}: unreadable sandbox state ({exc}); remove it after checking ps") from None


def read_state(state_dir: Path) -> list[HostState]:
    """The hosts recorded by ``up`` (empty when none run)."""
    record = read_record(state_dir)
    return record.hosts if record is not None else []


def write_record(state_dir: Path, record: Record) -> None:
    """Replace state.json with ``record`` (write, then rename)."""
    tmp = state_dir / STATE_TMP
    tmp.write_text(json.dumps(asdict(record), indent=2))
    tmp.replace(state_path(state_dir))


def owned(state_dir: Path, record: Record) -> bool:
    """Is the marker in ``state_dir`` the one ``up`` wrote with ``record``?"""
    marker = state_dir / MARKER_FILE
    if record.id is None or marker.is_symlink() or not marker.is_file():
        return False
    return marker.read_text().strip() == record.id


def start_record(state_dir: Path, record_id: str) -> Record:
    """Create the state folder if needed, then the marker and a record of ``record_id``."""
    record = Record(id=record_id)
    missing = []
    folder = state_dir
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    state_dir.mkdir(parents=True, exist_ok=True)
    record.state_dirs = [str(p) for p in reversed(missing)]
    with (state_dir / MARKER_FILE).open("x") as marker:
        marker.write(record_id + "\n")
    write_record(state_dir, record)
    return record


def note(state_dir: Path, record: Record, *paths: Path) -> None:
    """Record ``paths`` as created by ``up`` before creating them, so ``down`` finds them after a crash."""
    record.created.extend(str(p) for p in paths if str(p) not in record.created)
    write_record(state_dir, record)


def make_dirs(directory: Path, state_dir: Path, record: Record) -> None:
    """``mkdir -p`` that records each folder it creates."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        note(state_dir, record, folder)
        folder.mkdir()


def refuse_foreign(state_dir: Path, paths: list[Path]) -> None:
    """Refuse to overwrite anything ``up`` would write but did not create."""
    for path in [*(state_dir / n for n in (STATE_FILE, STATE_TMP, MARKER_FILE)), *paths]:
        if path.exists() or path.is_symlink():
            raise SandboxError(
                f"{path} exists and sandbox.up did not create it; remove it or choose another "
                "sandbox folder (fluxops.sandbox.dir, INVOKE_FLUXOPS_SANDBOX_DIR)"
            )


def remove_files(state_dir: Path, record: Record, mounted: list[str]) -> tuple[list[str], list[str]]:
    """Delete what ``record`` says ``up`` created, newest first; folders only when empty.

    ``mounted`` lists the mount points of this mount namespace: a host folder with one under it
    keeps every file.
    """
    removed: list[str] = []
    kept: list[str] = []
    for name in record.host_dirs:
        directory = Path(name)
        own_parent = os.path.realpath(directory.parent) == os.path.realpath(state_dir / HOSTS_DIR)
        if not own_parent or directory.is_symlink():
            kept.append(f"kept {directory}: not a host folder of {state_dir}")
            continue
        root = os.path.realpath(directory)
        if any(p == root or p.startswith(root + os.sep) for p in mounted):
            raise SandboxError(f"{directory} still has mounts under it; deleted nothing there (see mount)")
        if directory.exists():
            shutil.rmtree(directory)
            removed.append(str(directory))
    for name in reversed(record.created):
        _remove_one(Path(name), removed, kept)
    for path in (state_dir / STATE_TMP, state_path(state_dir), state_dir / MARKER_FILE):
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
