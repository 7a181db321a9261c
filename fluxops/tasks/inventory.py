"""invoke inventory.*: look at the resolved inventory."""

from __future__ import annotations

import json

from invoke import Context, task

from fluxops import inventory as inv
from fluxops.report import print_inventory
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
    inventory = inv.load(settings.inventory)
    hosts = inventory.select(cluster)
    if json_:
        print(json.dumps(inv.as_dict(hosts), indent=2, default=str))
    else:
        print_inventory(inventory.path, hosts)
