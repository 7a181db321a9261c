"""The end-to-end demo on the sandbox hosts: what `invoke demo` runs."""

from __future__ import annotations

from collections.abc import Callable

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.progname import progname
from fluxops.settings import Settings
from fluxops.shell import Connections
from fluxops.tables import print_inventory


def run(settings: Settings, *, keep: bool = False, say: Callable[[str], None] = print) -> bool:
    """Sandbox up, inventory shown, every host checked over SSH, sandbox down; True when all pass."""
    from fluxops import hostcheck  # testinfra is optional: loaded only for the host checks

    hostcheck.require_testinfra()  # before any host starts
    inventory = inv.load(settings.sandbox_inventory, clusters=settings.clusters, root=settings.root)
    say(f"[bold]1. sandbox hosts up[/] ({settings.sandbox_inventory})")
    sandbox.up(
        inventory,
        settings.sandbox_dir,
        subnet=settings.sandbox_subnet,
        real_inventory=settings.inventory,
        progress=lambda m: say(f"   {m}"),
    )
    ok = True
    try:
        say("[bold]2. inventory[/]")
        print_inventory(inventory.path, inventory.hosts)
        say("[bold]3. one command per host through fluxops.shell[/]")
        with Connections(connect_timeout=settings.connect_timeout) as conns:
            for host in inventory.hosts:
                result = conns.get(host).run(["uname", "-nsr"])
                say(f"   {host.name}: {result.stdout.strip()} ({result.duration * 1000:.0f} ms)")
        say("[bold]4. testinfra checks[/]")
        for host in inventory.hosts:
            ssh_config = sandbox.ssh_config_path(settings.sandbox_dir)
            for check in hostcheck.check_host(host.name, ssh_config, host.address):
                mark = "[green]ok[/]  " if check.ok else "[red]FAIL[/]"
                say(f"   {mark} {check.host:<5} {check.name:<20} {check.detail}")
                ok = ok and check.ok
    finally:
        if keep:
            say(f"sandbox left running; stop it with: {progname()} sandbox.down ({settings.sandbox_dir})")
        else:
            say("[bold]5. sandbox hosts down[/]")
            result = sandbox.down(settings.sandbox_dir, progress=lambda m: say(f"   {m}"))
            for line in result.kept:
                say(f"   [yellow]{line}[/]")
    return ok
