"""A sandbox host's container: booted by systemd-nspawn, waited for until SSH works, stopped by PID.

Each host runs

    unshare --mount --propagation private -- sh -c BOOT

where BOOT mounts the overlay (lower ``/``, the host's upper directory) in that private mount
namespace and execs ``systemd-nspawn --register=no --keep-unit --network-veth --boot`` on it, with
the minimal target as the unit to boot. The PID ``up`` starts is nspawn's own; the overlay lives
only in its mount namespace, so it goes with it. nspawn creates the veth pair (``ve-<machine>``
here, ``host0`` in the host); the kernel removes it with the host's network namespace.

SIGTERM to nspawn powers the host off (systemd shuts down as on a real node). A host whose nspawn
is gone is stopped through its init (SIGRTMIN+4, systemd's power-off request), and SIGKILL to that
PID 1 ends every process of the host at once.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
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
STOP_TIMEOUT = 15.0
LOG_FILE = "boot.log"
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")  # nspawn's per-machine folder, gone when it exits
POWER_OFF = signal.SIGRTMIN + 4  # systemd as PID 1: power off

# $1 mount point, $2 upper, $3 work, $4 machine name, $5 machine id (UUID), $6 unit to boot
BOOT = r"""
set -e
mount -t overlay overlay -o "lowerdir=/,upperdir=$2,workdir=$3" "$1"
exec systemd-nspawn --quiet --register=no --keep-unit --directory="$1" --machine="$4" --uuid="$5" \
  --network-veth --boot -- systemd.unit="$6"
"""


def launch(machine: str, directory: Path, machine_id: str) -> subprocess.Popen[bytes]:
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
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            # each host folder is booted by one nspawn only (the record says which): no image lock files
            env={**os.environ, "SYSTEMD_NSPAWN_LOCK": "0"},
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
    """Power every host off at once, by recorded PID; SIGKILL to PID 1 of any that does not stop."""
    waiting: list[tuple[int, str]] = []
    inits: dict[int, str] = {}
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
            inits[state.init_pid] = state.init_start
    left = processes.wait_gone(waiting, STOP_TIMEOUT)
    if not left:
        return
    for pid, _ in left:
        if pid in inits:
            processes.send(pid, signal.SIGKILL)  # PID 1 of the host: the kernel ends all its processes
    left = processes.wait_gone(left, 2.0)
    for pid, start in left:
        if processes.alive(pid, start):
            processes.send(pid, signal.SIGKILL)
    left = processes.wait_gone(left, STOP_TIMEOUT)
    if left:
        raise SandboxError(f"sandbox processes {', '.join(str(p) for p, _ in left)} did not stop")
