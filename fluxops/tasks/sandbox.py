"""invoke sandbox.*: loopback test hosts with real sshd, for demos and tests."""

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
    """Start a real sshd for every host of the sandbox inventory (loopback only)."""
    settings = config(c)
    inventory = inv.load(settings.sandbox_inventory, clusters=settings.clusters, root=settings.root)
    hosts = sandbox.up(inventory, settings.sandbox_dir, progress=_progress)
    for host in hosts:
        console.print(f"[green]up[/] {host.name:<6} {host.address}:{host.port}  (sshd pid {host.sshd_pid})")
    console.print(f"ssh to a host: ssh -F {sandbox.ssh_config_path(settings.sandbox_dir)} {hosts[0].name}")


@task
@user_errors
def status(c: Context) -> None:
    """Show each sandbox host: running, listening. Exits 1 when any is down."""
    settings = config(c)
    hosts = sandbox.status(settings.sandbox_dir)
    if not hosts:
        raise Exit("no sandbox is running (invoke sandbox.up starts one)", code=1)
    for h in hosts:
        state = "[green]up[/]" if h.running and h.listening else "[red]down[/]"
        console.print(f"{state:<20} {h.cluster:<5} {h.name:<6} {h.address}:{h.port}")
    if not all(h.running and h.listening for h in hosts):
        raise Exit(code=1)


@task
@user_errors
def down(c: Context) -> None:
    """Stop the sandbox hosts that sandbox.up started and delete only the files it created."""
    settings = config(c)
    result = sandbox.down(settings.sandbox_dir, progress=_progress)
    console.print(f"stopped {', '.join(result.stopped)}" if result.stopped else "no sandbox was running")
    if result.removed:
        console.print(f"removed {len(result.removed)} files and folders that sandbox.up created")
    for line in result.kept:
        console.print(f"[yellow]{line}[/]")
