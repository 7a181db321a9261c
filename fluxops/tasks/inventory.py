"""invoke inventory.*: look at the resolved inventory."""

from __future__ import annotations

from invoke import Context, Exit

from fluxops.tasks.common import FAILED, config, print_json, task, user_errors

CLUSTER_HELP = "only this cluster's hosts (default: every cluster)"


@task(help={"cluster": CLUSTER_HELP, "json": "print JSON instead of a table"})
@user_errors
def show(c: Context, cluster: str | None = None, json_: bool = False) -> None:
    """Print the resolved hosts and variables of the inventory (secrets masked)."""
    from fluxops import inventory as inv

    settings = config(c)
    inventory = inv.load(settings.inventory, clusters=settings.clusters, root=settings.root)
    hosts = inventory.select(cluster)
    if json_:
        print_json(inv.as_dict(hosts))
    else:
        from fluxops.tables import print_inventory

        print_inventory(inventory.path, hosts)


@task(
    help={
        "cluster": CLUSTER_HELP,
        "accept_new_host_key": "record the key of a host met for the first time (a changed key is refused)",
        "json": "print each host's answer as JSON instead of a line per host",
    }
)
@user_errors
def ping(
    c: Context, cluster: str | None = None, accept_new_host_key: bool = False, json_: bool = False
) -> None:
    """Reach every host over SSH at once and show each one's answer and round trip."""
    from rich.markup import escape

    from fluxops import inventory as inv
    from fluxops.ping import ping as ping_hosts
    from fluxops.shell import Connections
    from fluxops.tables import console

    settings = config(c)
    hosts = inv.load(settings.inventory, clusters=settings.clusters, root=settings.root).select(cluster)
    accept = accept_new_host_key or settings.accept_new_host_key
    with Connections(connect_timeout=settings.connect_timeout, accept_new_host_key=accept) as conns:
        replies = ping_hosts(hosts, conns, timeout=settings.command_timeout)
    failed = [r.host for r in replies if not r.ok]
    if json_:
        print_json(
            {
                "ok": not failed,
                "hosts": [
                    {
                        "host": r.host,
                        "cluster": r.cluster,
                        "ok": r.ok,
                        "detail": r.detail,
                        "millis": round(r.millis, 1) if r.ok else None,
                    }
                    for r in replies
                ],
            }
        )
    else:
        for reply in replies:
            mark = "[green]ok[/]  " if reply.ok else "[red]FAIL[/]"
            timing = f" ({reply.millis:.0f} ms)" if reply.ok else ""
            # the detail is plain text: "[n5]" or "'[node1]:2222'" in it must not be read as rich markup
            console.print(f"{mark} {reply.cluster:<5} {reply.host:<6} {escape(reply.detail)}{timing}")
    if failed:
        raise Exit(f"error: unreachable: {', '.join(failed)}", code=FAILED)
    if not json_:
        console.print(f"{len(replies)} host(s) answered")
