"""``up``, ``status`` and ``down``: every host booted at once, stopped at once, nothing left behind."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

from fluxops.errors import SandboxError
from fluxops.inventory import Host, Inventory
from fluxops.sandbox import client_files, container, guard, host_files, network, processes
from fluxops.sandbox.capabilities import capability_problems
from fluxops.sandbox.network import Link
from fluxops.sandbox.record import (
    HOSTS_DIR,
    MARKER_FILE,
    STATE_FILE,
    HostState,
    Record,
    make_dirs,
    note,
    owned,
    read_record,
    read_state,
    refuse_foreign,
    remove_files,
    start_record,
    state_path,
    write_record,
)
from fluxops.shell import local

Progress = Callable[[str], None]


@dataclass(frozen=True)
class HostStatus:
    """What ``status`` found for one host."""

    name: str
    cluster: str
    address: str
    port: int
    machine: str
    veth: str
    running: bool
    link: str  # the veth's state on the machine: up, down or gone
    listening: bool


@dataclass(frozen=True)
class Teardown:
    """What ``down`` did: hosts stopped, paths and routes removed, and why anything was kept."""

    stopped: list[str]
    removed: list[str]
    kept: list[str]


def _quiet(_message: str) -> None:
    return None


def up(
    inventory: Inventory,
    state_dir: Path,
    *,
    real_inventory: Path | None,
    subnet: IPv4Network | str = guard.DEFAULT_SUBNET,
    progress: Progress = _quiet,
) -> list[HostState]:
    """Boot a sandbox host for every host of ``inventory``, all at once; return them once SSH works.

    ``real_inventory`` is the operator's inventory: a ``subnet`` holding any of its addresses is
    refused, as is any host outside ``subnet``, before anything is created.
    """
    problems = capability_problems()
    if problems:
        raise SandboxError("cannot start sandbox hosts: " + "; ".join(problems))
    subnet = guard.parse_subnet(subnet)
    guard.check_subnet(subnet, real_inventory, sandbox_inventory=inventory.path)
    hosts = list(inventory.hosts)
    links = guard.check_hosts(hosts, inventory.path, subnet)
    state_dir = state_dir.absolute()
    _clear_previous(state_dir, links, progress)
    ssh_config = client_files.ssh_config_path(state_dir)
    refuse_foreign(state_dir, [ssh_config, *(state_dir / HOSTS_DIR / h.name for h in hosts)])
    record = start_record(state_dir, uuid.uuid4().hex)
    machine_ids = _write_files(hosts, links, state_dir, record, progress)
    try:
        with network.claim_lock():
            network.refuse_conflicts({n: link.network for n, link in links.items()})
            for host in hosts:
                record.fences.append(str(links[host.name].network))
                write_record(state_dir, record)
                network.add_fence(links[host.name].network)
        return _boot(hosts, links, machine_ids, state_dir, record, progress)
    except BaseException:
        container.stop(record.hosts, progress)
        _remove_network(record)
        write_record(state_dir, record)
        raise


def _clear_previous(state_dir: Path, links: dict[str, Link], progress: Progress) -> None:
    """Refuse a running sandbox or taken addresses; remove what a stopped sandbox of this folder left."""
    previous = read_record(state_dir)
    if previous is not None:
        running = [h.name for h in previous.hosts if container.running(h)]
        if running:
            raise SandboxError(
                f"sandbox in {state_dir} already runs ({', '.join(running)}); run sandbox.down first"
            )
    ours = set(previous.fences) if previous is not None and owned(state_dir, previous) else set()
    network.refuse_conflicts({n: k.network for n, k in links.items() if str(k.network) not in ours})
    if previous is None:
        return
    if not owned(state_dir, previous):
        raise SandboxError(
            f"{state_path(state_dir)} was not written by sandbox.up in this folder (no matching "
            f"{MARKER_FILE}); run sandbox.down to stop what it records, then remove it yourself"
        )
    progress(f"removing what the previous sandbox created in {state_dir}")
    for line in _remove_everything(state_dir, previous)[1]:
        progress(line)


def _write_files(
    hosts: list[Host], links: dict[str, Link], state_dir: Path, record: Record, progress: Progress
) -> dict[str, str]:
    """Client key, each host's folder and files, known_hosts lines, ssh_config; each host's machine id."""
    client_pub = _client_keys(hosts, state_dir, record, progress)
    make_dirs(state_dir / HOSTS_DIR, state_dir, record)
    machine_ids: dict[str, str] = {}
    known: dict[Path, dict[str, str]] = {}
    for host in hosts:
        directory = state_dir / HOSTS_DIR / host.name
        record.host_dirs.append(str(directory))
        write_record(state_dir, record)
        machine_ids[host.name] = uuid.uuid4().hex
        public = host_files.prepare(host, links[host.name], directory, client_pub, machine_ids[host.name])
        assert host.known_hosts is not None
        known.setdefault(host.known_hosts, {})[client_files.known_name(host)] = public
    for path, entries in known.items():
        if not path.exists():
            make_dirs(path.parent, state_dir, record)
            note(state_dir, record, path)
        client_files.write_known_hosts(path, entries)
    ssh_config = client_files.ssh_config_path(state_dir)
    note(state_dir, record, ssh_config)
    client_files.write_ssh_config(state_dir, hosts)
    return machine_ids


def _boot(
    hosts: list[Host],
    links: dict[str, Link],
    machine_ids: dict[str, str],
    state_dir: Path,
    record: Record,
    progress: Progress,
) -> list[HostState]:
    """Launch every host, then wait for all of them at once (one thread each)."""
    started = time.monotonic()
    deadline = started + container.START_TIMEOUT
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        _launch_all(hosts, links, machine_ids, state_dir, record, procs, progress)
        lock = threading.Lock()

        def bring_up(index: int) -> str:
            host, state = hosts[index], record.hosts[index]
            state = container.attach(state, procs[host.name], links[host.name], deadline)
            with lock:
                record.hosts[index] = state
                write_record(state_dir, record)
            system = container.wait_ready(host, state, procs[host.name], deadline)
            took = time.monotonic() - started
            progress(f"{host.name} answers over SSH after {took:.1f}s (systemd: {system})")
            return system

        with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="sandbox-boot") as pool:
            futures = [pool.submit(bring_up, i) for i in range(len(hosts))]
            errors = [error for f in futures if (error := f.exception()) is not None]
        if errors:
            raise errors[0]
        return list(record.hosts)
    except BaseException:
        nspawns = {s.nspawn_pid for s in record.hosts if container.is_ours(s)}
        for proc in procs.values():  # launched, but not yet systemd-nspawn when the failure came
            if proc.poll() is None and proc.pid not in nspawns:
                proc.terminate()
                proc.wait()
        raise


def _launch_all(
    hosts: list[Host],
    links: dict[str, Link],
    machine_ids: dict[str, str],
    state_dir: Path,
    record: Record,
    procs: dict[str, subprocess.Popen[bytes]],
    progress: Progress,
) -> None:
    """Start every host's nspawn, each recorded (cgroups first, then its PID) as it goes."""
    for index, host in enumerate(hosts):
        machine = f"fx-{record.id[:6] if record.id else 'x'}-{index}"
        directory = state_dir / HOSTS_DIR / host.name
        link = links[host.name]
        progress(f"starting {host.name} at {host.address} (machine {machine})")
        cgroups = container.cgroup_dirs(machine)
        record.hosts.append(
            HostState(
                name=host.name,
                cluster=host.cluster,
                address=host.address,
                port=host.port,
                machine=machine,
                veth=network.veth_name(machine),
                machine_address=str(link.machine_address),
                network=str(link.network),
                directory=str(directory),
                mount_point=str(directory / "root"),
                nspawn_pid=0,
                nspawn_start="",
                cgroups=cgroups,
            )
        )
        write_record(state_dir, record)  # the cgroups, before they are made
        proc = container.launch(machine, directory, machine_ids[host.name], cgroups)
        procs[host.name] = proc
        record.hosts[index] = dataclasses.replace(
            record.hosts[index], nspawn_pid=proc.pid, nspawn_start=processes.start_time(proc.pid) or ""
        )
        write_record(state_dir, record)


def _client_keys(hosts: list[Host], state_dir: Path, record: Record, progress: Progress) -> str:
    """Generate (and record) the client keys that are missing; return their public keys."""
    client_keys = sorted({h.key_file for h in hosts if h.key_file is not None})
    for key in client_keys:
        if not key.is_file():
            progress(f"client key {key}")
            make_dirs(key.parent, state_dir, record)
            note(state_dir, record, key, key.with_name(key.name + ".pub"))
            client_files.keygen(key, "fluxops-sandbox-client")
    return "".join(key.with_name(key.name + ".pub").read_text() for key in client_keys)


def status(state_dir: Path) -> list[HostStatus]:
    """Each recorded host: does it run, is its veth up, does its sshd accept connections."""
    found = []
    for h in read_state(state_dir):
        link = "gone"
        if network.interface_exists(h.veth):
            flags = Path("/sys/class/net", h.veth, "flags").read_text().strip()
            link = "up" if int(flags, 16) & 0x1 else "down"
        found.append(
            HostStatus(
                name=h.name,
                cluster=h.cluster,
                address=h.address,
                port=h.port,
                machine=h.machine,
                veth=h.veth,
                running=container.running(h),
                link=link,
                listening=link == "up" and container.listening(h.address, h.port),
            )
        )
    return found


def down(state_dir: Path, *, progress: Progress = _quiet) -> Teardown:
    """Stop exactly the hosts ``up`` started (by PID), then remove what it recorded creating.

    Nothing is removed unless the folder's marker matches the id in state.json: a folder that
    ``up`` did not set up keeps every file, and the fence routes its state.json names stay.
    """
    state_dir = state_dir.absolute()
    record = read_record(state_dir)
    if record is None:
        return Teardown(stopped=[], removed=[], kept=[])
    container.stop(record.hosts, progress)
    stopped = [h.name for h in record.hosts]
    if not owned(state_dir, record):
        why = (
            f"deleted nothing in {state_dir}: it has no {MARKER_FILE} matching its {STATE_FILE}, "
            "so sandbox.up did not set it up"
        )
        kept = [why] + [
            f"kept route unreachable {net} metric {network.FENCE_METRIC} (named by that {STATE_FILE})"
            for net in record.fences
            if network.fence_exists(IPv4Network(net))
        ]
        kept += [
            f"kept cgroup {c} (named by that {STATE_FILE})"
            for h in record.hosts
            for c in h.cgroups
            if Path(c).is_dir()
        ]
        return Teardown(stopped=stopped, removed=[], kept=kept)
    removed, kept = _remove_everything(state_dir, record)
    kept += [
        f"kept cgroup {c}: a process of {h.name} is still in it (rmdir it once it is empty)"
        for h in record.hosts
        for c in h.cgroups
        if Path(c).is_dir()
    ]
    return Teardown(stopped=stopped, removed=removed, kept=kept)


def _remove_everything(state_dir: Path, record: Record) -> tuple[list[str], list[str]]:
    """Remove the veths, fence routes, mounts and files of a stopped sandbox's record."""
    removed = _remove_network(record)
    for host in record.hosts:
        if host.mount_point in _mount_points():
            local().run(["umount", host.mount_point], check=False)
    files_removed, kept = remove_files(state_dir, record, _mount_points())
    return removed + files_removed, kept


def _remove_network(record: Record) -> list[str]:
    """Delete the recorded veths that outlived their hosts, then the recorded fence routes."""
    removed = []
    for host in record.hosts:
        if not container.running(host) and network.delete_veth(host.veth):
            removed.append(f"interface {host.veth}")
        if container.remove_propagate_dir(host):
            removed.append(str(container.PROPAGATE_DIR / host.machine))
        removed += [f"cgroup {c}" for c in container.remove_cgroups(host)]
    for net in list(record.fences):
        if network.remove_fence(IPv4Network(net)):
            removed.append(f"route unreachable {net} metric {network.FENCE_METRIC}")
        record.fences.remove(net)
    return removed


def _mount_points() -> list[str]:
    """Mount points of this mount namespace."""
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1]))
    return points
