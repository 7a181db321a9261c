"""invoke inventory.*: look at the resolved inventory."""

from __future__ import annotations

import json

from invoke import Context, Exit, task
from rich.markup import escape

from fluxops import inventory as inv
from fluxops.ping import ping as ping_hosts
from fluxops.shell import Connections
from fluxops.tables import console, print_inventory
from fluxops.tasks.common import config, user_errors


@task(
    help={
        "cluster": "only this cluster's hosts (default: every cluster)",
        "json": "print JSON instead of a table",
    }
)
@user_errors
def show(c: Context, cluster: str | None = None, json_: bool = False) -> None:
    """Print the resolved hosts and variables of the inventory (secrets masked)."""
    settings = config(c)
    inventory = inv.load(settings.inventory, clusters=settings.clusters, root=settings.root)
    hosts = inventory.select(cluster)
    if json_:
        print(json.dumps(inv.as_dict(hosts), indent=2, default=str))
    else:
        print_inventory(inventory.path, hosts)


@task(
    help={
        "cluster": "only this cluster's hosts (default: every cluster)",
        "accept_new_host_key": "record the key of a host met for the first time (a changed key is refused)",
    }
)
@user_errors
def ping(c: Context, cluster: str | None = None, accept_new_host_key: bool = False) -> None:
    """Reach every host over SSH at once and show each one's answer and round trip."""
    settings = config(c)
    hosts = inv.load(settings.inventory, clusters=settings.clusters, root=settings.root).select(cluster)
    accept = accept_new_host_key or settings.accept_new_host_key
    with Connections(connect_timeout=settings.connect_timeout, accept_new_host_key=accept) as conns:
        replies = ping_hosts(hosts, conns, timeout=settings.command_timeout)
    for reply in replies:
        mark = "[green]ok[/]  " if reply.ok else "[red]FAIL[/]"
        timing = f" ({reply.millis:.0f} ms)" if reply.ok else ""
        # the detail is plain text: "[n5]" or "'[node1]:2222'" in it must not be read as rich markup
        console.print(f"{mark} {reply.cluster:<5} {reply.host:<6} {escape(reply.detail)}{timing}")
    failed = [r.host for r in replies if not r.ok]
    if failed:
        raise Exit(f"unreachable: {', '.join(failed)}", code=1)
