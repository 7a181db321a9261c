"""invoke sandbox.*: test hosts that boot like real nodes (systemd-nspawn), for demos and tests."""

from __future__ import annotations

from invoke import Context, Exit, task

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.tables import console
from fluxops.tasks.common import config, user_errors


def _progress(message: str) -> None:
    console.print(f"  {message}")


@task
@user_errors
def up(c: Context) -> None:
    """Boot a container with systemd and its own address for every host of the sandbox inventory."""
    settings = config(c)
    inventory = inv.load(settings.sandbox_inventory, clusters=settings.clusters, root=settings.root)
    hosts = sandbox.up(
        inventory,
        settings.sandbox_dir,
        subnet=settings.sandbox_subnet,
        real_inventory=settings.inventory,
        progress=_progress,
    )
    for host in hosts:
        console.print(
            f"[green]up[/] {host.name:<6} {host.address}:{host.port}  "
            f"(machine {host.machine}, veth {host.veth}, systemd-nspawn pid {host.nspawn_pid})"
        )
    console.print(f"ssh to a host: ssh -F {sandbox.ssh_config_path(settings.sandbox_dir)} {hosts[0].name}")


@task
@user_errors
def status(c: Context) -> None:
    """Show each sandbox host: running, its veth up, sshd answering. Exits 1 when any is down."""
    settings = config(c)
    hosts = sandbox.status(settings.sandbox_dir)
    if not hosts:
        raise Exit("no sandbox is running (invoke sandbox.up starts one)", code=1)
    for h in hosts:
        ok = h.running and h.listening
        state = "[green]up  [/]" if ok else "[red]down[/]"
        detail = "" if ok else f"  (running: {'yes' if h.running else 'no'}, veth {h.veth}: {h.link})"
        console.print(f"{state} {h.cluster:<5} {h.name:<6} {h.address}:{h.port}{detail}")
    if not all(h.running and h.listening for h in hosts):
        raise Exit(code=1)


@task
@user_errors
def down(c: Context) -> None:
    """Stop the sandbox hosts that sandbox.up started and remove only what it created."""
    settings = config(c)
    result = sandbox.down(settings.sandbox_dir, progress=_progress)
    console.print(f"stopped {', '.join(result.stopped)}" if result.stopped else "no sandbox was running")
    if result.removed:
        console.print(f"removed {len(result.removed)} files, folders and routes that sandbox.up created")
    for line in result.kept:
        console.print(f"[yellow]{line}[/]")
