"""invoke sandbox.*: test hosts that boot like real nodes (systemd-nspawn), for demos and tests."""

from __future__ import annotations

from collections.abc import Callable

from invoke import Context, Exit

from fluxops.progname import command
from fluxops.tasks.common import FAILED, config, print_json, task, user_errors


def _sayer(json_: bool) -> Callable[[str], None]:
    """Where progress lines go: the console, or stderr when stdout carries the JSON document."""
    from fluxops.tables import console

    if json_:
        import sys

        return lambda message: print(f"  {message}", file=sys.stderr)
    return lambda message: console.print(f"  {message}")


@task(help={"json": "print the hosts started as JSON (progress lines go to stderr)"})
@user_errors
def up(c: Context, json_: bool = False) -> None:
    """Boot a container with systemd and its own address for every host of the sandbox inventory."""
    from fluxops import inventory as inv
    from fluxops import sandbox
    from fluxops.sandbox import as_json
    from fluxops.tables import console

    settings = config(c)
    inventory = inv.load(settings.sandbox_inventory, clusters=settings.clusters, root=settings.root)
    hosts = sandbox.up(
        inventory,
        settings.sandbox_dir,
        subnet=settings.sandbox_subnet,
        real_inventory=settings.inventory,
        progress=_sayer(json_),
    )
    ssh_config = sandbox.ssh_config_path(settings.sandbox_dir)
    if json_:
        print_json(as_json.started(hosts, ssh_config))
        return
    for host in hosts:
        console.print(
            f"[green]up[/] {host.name:<6} {host.address}:{host.port}  "
            f"(machine {host.machine}, veth {host.veth}, systemd-nspawn pid {host.nspawn_pid})"
        )
    console.print(f"ssh to a host: ssh -F {ssh_config} {hosts[0].name}")
    console.print(f"sandbox up: {len(hosts)} host(s)")


@task(help={"json": "print each host's state as JSON instead of a line per host"})
@user_errors
def status(c: Context, json_: bool = False) -> None:
    """Show each sandbox host: running, its veth up, sshd answering. Exits 1 when any is down."""
    from fluxops import sandbox
    from fluxops.sandbox import as_json
    from fluxops.tables import console

    settings = config(c)
    hosts = sandbox.status(settings.sandbox_dir)
    data = as_json.status(hosts)
    if json_:
        print_json(data)
    if not hosts:
        raise Exit(f"error: no sandbox is running ({command('sandbox.up')} starts one)", code=FAILED)
    if not json_:
        for h in hosts:
            up_ = h.running and h.listening
            state = "[green]up  [/]" if up_ else "[red]down[/]"
            detail = "" if up_ else f"  (running: {'yes' if h.running else 'no'}, veth {h.veth}: {h.link})"
            console.print(f"{state} {h.cluster:<5} {h.name:<6} {h.address}:{h.port}{detail}")
    if not data["ok"]:
        raise Exit("error: some sandbox hosts are down (see above)", code=FAILED)


@task(help={"json": "print what was stopped, removed and kept as JSON (progress lines go to stderr)"})
@user_errors
def down(c: Context, json_: bool = False) -> None:
    """Stop the sandbox hosts that sandbox.up started and remove only what it created."""
    from fluxops import sandbox
    from fluxops.sandbox import as_json
    from fluxops.tables import console

    settings = config(c)
    result = sandbox.down(settings.sandbox_dir, progress=_sayer(json_))
    if json_:
        print_json(as_json.teardown(result))
        return
    for line in result.kept:
        console.print(f"[yellow]{line}[/]")
    if result.removed:
        console.print(f"removed {len(result.removed)} files, folders and routes that sandbox.up created")
    console.print(f"stopped {', '.join(result.stopped)}" if result.stopped else "no sandbox was running")
