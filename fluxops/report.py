"""Terminal output shared by tasks: tables and status lines (rich)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fluxops.inventory import Host

console = Console(highlight=False)


def print_inventory(path: Path, hosts: Iterable[Host]) -> None:
    """A table of hosts and their variables (secrets already masked)."""
    table = Table(title=f"inventory {path}", title_justify="left")
    for column in ("cluster", "host", "address", "user", "become", "variables"):
        table.add_column(column, overflow="fold")
    for host in hosts:
        variables = "\n".join(
            f"{k}={v}" for k, v in sorted(host.public_vars().items()) if not k.startswith("ansible_")
        )
        table.add_row(
            host.cluster,
            host.name,
            f"{host.address}:{host.port}",
            host.user,
            "yes" if host.become else "no",
            variables,
        )
    console.print(table)
