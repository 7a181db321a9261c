"""A sandbox host's container: booted by systemd-nspawn, waited for until SSH works, stopped by PID.

Each host runs

    unshare --mount --propagation private -- sh -c BOOT

where BOOT mounts the overlay (lower ``/``, the host's upper directory) in that private mount
namespace and execs ``systemd-nspawn --register=no --keep-unit --network-veth --boot`` on it, with
the minimal target as the unit to boot. The PID ``up`` starts is nspawn's own; the overlay lives
only in its mount namespace, so it goes with it. nspawn creates the veth pair (``ve-<machine>``
here, ``host0`` in the host); the kernel removes it with the host's network namespace.

SIGTERM to nspawn powers the host off (systemd shuts down as on a real node). A host whose nspawn
is gone is stopped through its init (SIGRTMIN+4, systemd's power-off request). A host still up after
``POWER_OFF_GRACE`` gets SIGKILL on its PID 1, which ends every process of the host at once.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fluxops.errors import CommandError, SandboxError
from fluxops.inventory import Host
from fluxops.sandbox import network, processes
from fluxops.sandbox.host_files import TARGET
from fluxops.sandbox.network import Link
from fluxops.sandbox.record import HostState
from fluxops.shell import RemoteShell

NSPAWN = "systemd-nspawn"
START_TIMEOUT = 60.0  # seconds from launch until SSH works and systemd has booted
POWER_OFF_GRACE = 5.0  # seconds a host has to power off before SIGKILL ends it
KILL_WAIT = 5.0
LOG_FILE = "boot.log"
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")  # nspawn's per-machine folder, gone when it exits
POWER_OFF = signal.SIGRTMIN + 4  # systemd as PID 1: power off

CGROUP_PREFIX = "fluxops-sandbox-"
CGROUP_WAIT = 10.0

# $1 mount point, $2 upper, $3 work, $4 machine name, $5 machine id (UUID), $6 unit to boot, then
# nspawn's --bind-ro options; $FLUXOPS_SANDBOX_CGROUPS: the host's own cgroup folders (generated
# names, no spaces): nspawn --keep-unit runs the host in the cgroup it is started in.
BOOT = r"""
set -e
root=$1 upper=$2 work=$3 machine=$4 uuid=$5 unit=$6
shift 6
for cgroup in $FLUXOPS_SANDBOX_CGROUPS; do
  mkdir "$cgroup"
  echo $$ > "$cgroup/cgroup.procs"
done
mount -t overlay overlay -o "lowerdir=/,upperdir=$upper,workdir=$work" "$root"
exec systemd-nspawn --quiet --register=no --keep-unit --directory="$root" --machine="$machine" \
  --uuid="$uuid" --network-veth "$@" --boot -- systemd.unit="$unit"
"""
# nspawn mounts a fresh tmpfs on these in the host: what the hosts must run from there is bound in
MASKED = (Path("/tmp"), Path("/dev/shm"), Path("/run"))


def shared_binds() -> list[str]:
    """``--bind-ro`` options for this fluxops checkout and virtualenv when they lie where nspawn mounts
    a fresh tmpfs (a clone under /tmp): the hosts run the simulator's commands from them."""
    import fluxops

    needed = {Path(fluxops.__file__).resolve().parents[1], Path(sys.prefix).resolve()}
    under = sorted(p for p in needed if any(p.is_relative_to(m) for m in MASKED))
    outer = [p for p in under if not any(p != q and p.is_relative_to(q) for q in under)]  # a venv inside
    return [f"--bind-ro={p}" for p in outer if ":" not in str(p)]  # nspawn splits its option at ':'


def cgroup_dirs(machine: str) -> list[str]:
    """The host's own cgroup in each hierarchy systemd uses (cgroup2, and v1 ``name=systemd``).

    Without one, every host's systemd would manage the same cgroups (the launcher's), and stopping a
    unit on one host would stop it on all. Each folder goes below this process's own cgroup.
    """
    unified = named = None
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, point, kind, options = line.split()[:4]
        if kind == "cgroup2" and unified is None:
            unified = point
        elif kind == "cgroup" and "name=systemd" in options.split(",") and named is None:
            named = point
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        mount = None
        if (hierarchy, controllers) == ("0", ""):
            mount = unified
        elif controllers == "name=systemd":
            mount = named
        if mount is not None:
            dirs.append(os.path.join(mount, path.lstrip("/"), CGROUP_PREFIX + machine))
    return dirs


def remove_cgroups(state: HostState, wait: float = CGROUP_WAIT) -> list[str]:
    """Remove the host's recorded cgroup folders (and the ones nspawn made in them) once it is down.

    A cgroup folder can go only when no process is left in it, an exited one not yet reaped included
    (the machine's PID 1 reaps a host whose nspawn was killed): this waits up to ``wait`` seconds.
    """
    if running(state):
        return []
    removed = []
    deadline = time.monotonic() + wait
    for top in state.cgroups:
        if not Path(top).name.startswith(CGROUP_PREFIX):
            continue
        while Path(top).is_dir():
            try:
                for folder, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count(os.sep)):
                    os.rmdir(folder)
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            else:
                removed.append(top)
    return removed


def launch(machine: str, directory: Path, machine_id: str, cgroups: list[str]) -> subprocess.Popen[bytes]:
    """Start the host's nspawn (its PID is the returned process's) with its console going to boot.log."""
    log = (directory / LOG_FILE).open("ab")
    try:
        return subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                BOOT,
                "sandbox-boot",
                str(directory / "root"),
                str(directory / "upper"),
                str(directory / "work"),
                machine,
                machine_id,
                TARGET,
                *shared_binds(),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            # each host folder is booted by one nspawn only (the record says which): no image lock files
            env={**os.environ, "SYSTEMD_NSPAWN_LOCK": "0", "FLUXOPS_SANDBOX_CGROUPS": " ".join(cgroups)},
        )
    finally:
        log.close()


def _log_tail(directory: Path) -> str:
    try:
        return (directory / LOG_FILE).read_text(errors="replace").strip()[-2000:]
    except OSError:
        return ""


def _check_running(state: HostState, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        raise SandboxError(
            f"sandbox host {state.name} stopped while booting (exit {proc.returncode}); "
            f"{Path(state.directory) / LOG_FILE}:\n{_log_tail(Path(state.directory))}"
        )


def _timed_out(state: HostState, what: str) -> SandboxError:
    return SandboxError(
        f"sandbox host {state.name}: {what} within {START_TIMEOUT:.0f}s; "
        f"see {Path(state.directory) / LOG_FILE}"
    )


def attach(state: HostState, proc: subprocess.Popen[bytes], link: Link, deadline: float) -> HostState:
    """Once nspawn has made the veth: address it, and find the host's PID 1; the state with that PID."""
    while not network.interface_exists(state.veth):
        _check_running(state, proc)
        if time.monotonic() > deadline:
            raise _timed_out(state, f"no interface {state.veth}")
        time.sleep(0.01)
    network.configure(state.veth, link)
    while True:
        _check_running(state, proc)
        for child in processes.children(state.nspawn_pid):
            start = processes.start_time(child)
            if start is not None and processes.namespace_pid(child) == 1:
                return dataclasses.replace(state, init_pid=child, init_start=start)
        if time.monotonic() > deadline:
            raise _timed_out(state, "no init process")
        time.sleep(0.01)


def wait_ready(host: Host, state: HostState, proc: subprocess.Popen[bytes], deadline: float) -> str:
    """Wait until fluxops logs in over SSH and systemd has finished booting; return its state.

    ``systemctl is-system-running --wait`` says ``running``, or ``degraded`` when a unit failed.
    """
    while not listening(host.address, host.port):
        _check_running(state, proc)
        if time.monotonic() > deadline:
            raise _timed_out(state, f"nothing listening on {host.address}:{host.port}")
        time.sleep(0.02)
    last: CommandError | None = None
    while time.monotonic() < deadline:
        _check_running(state, proc)
        shell = RemoteShell(host, connect_timeout=max(1.0, deadline - time.monotonic()))
        try:
            left = max(1.0, deadline - time.monotonic())
            result = shell.run(["systemctl", "is-system-running", "--wait"], timeout=left, check=False)
            if result.stdout.strip() in ("running", "degraded"):
                return result.stdout.strip()
        except CommandError as exc:
            last = exc
        finally:
            shell.close()
        time.sleep(0.05)
    raise SandboxError(f"sandbox host {state.name} did not finish booting: {last or 'still starting'}")


def listening(address: str, port: int, timeout: float = 0.3) -> bool:
    """Does something accept TCP connections on ``address``:``port``?"""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_ours(state: HostState) -> bool:
    """Is the recorded nspawn PID still that process, booting that machine?"""
    if not processes.alive(state.nspawn_pid, state.nspawn_start):
        return False
    argv = processes.command_line(state.nspawn_pid)
    return bool(argv) and Path(argv[0]).name == NSPAWN and f"--machine={state.machine}" in argv


def running(state: HostState) -> bool:
    """Does the host run: its nspawn, or (nspawn gone) its PID 1?"""
    return is_ours(state) or processes.alive(state.init_pid, state.init_start or None)


def remove_propagate_dir(state: HostState) -> bool:
    """Remove the empty folder nspawn keeps for the host's machine name, if a killed nspawn left it."""
    path = PROPAGATE_DIR / state.machine
    if running(state) or path.is_symlink() or not path.is_dir() or any(path.iterdir()):
        return False
    path.rmdir()
    return True


def stop(states: list[HostState], progress: Callable[[str], None]) -> None:
    """Power every host off at once, by recorded PID; SIGKILL to PID 1 of any still up after the grace.

    A host usually powers off in well under a second; one whose shutdown hangs (a unit that does not
    stop) is ended after ``POWER_OFF_GRACE`` seconds as nspawn's second SIGTERM would end it.
    """
    waiting: list[tuple[int, str]] = []
    inits: dict[int, HostState] = {}
    for state in states:
        init_alive = state.init_pid > 0 and processes.alive(state.init_pid, state.init_start)
        if is_ours(state):
            progress(f"stopping {state.name} (systemd-nspawn pid {state.nspawn_pid})")
            processes.send(state.nspawn_pid, signal.SIGTERM)
            waiting.append((state.nspawn_pid, state.nspawn_start))
        elif init_alive:
            progress(f"stopping {state.name} (its systemd, pid {state.init_pid}; nspawn is gone)")
            processes.send(state.init_pid, POWER_OFF)
        if init_alive:
            waiting.append((state.init_pid, state.init_start))
            inits[state.init_pid] = state
    left = processes.wait_gone(waiting, POWER_OFF_GRACE)
    if not left:
        return
    for pid, _ in left:
        if pid in inits:
            progress(f"{inits[pid].name} did not power off within {POWER_OFF_GRACE:g}s: SIGKILL to its PID 1")
            processes.send(pid, signal.SIGKILL)  # the kernel ends every process of the host
    left = processes.wait_gone(left, KILL_WAIT)
    for pid, start in left:
        if processes.alive(pid, start):
            processes.send(pid, signal.SIGKILL)
    left = processes.wait_gone(left, KILL_WAIT)
    if left:
        raise SandboxError(f"sandbox processes {', '.join(str(p) for p, _ in left)} did not stop")
