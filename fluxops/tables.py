"""Terminal output shared by tasks: tables and status lines (rich)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fluxops.inventory import Host

# a terminal sets its own width; piped output (CI logs, tests) gets room for the tables; NO_COLOR
# (https://no-color.org) drops every escape code, bold and italic included, not only the colours
console = Console(
    highlight=False,
    width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120,
    color_system=None if os.environ.get("NO_COLOR") else "auto",
)


def print_inventory(path: Path, hosts: Iterable[Host]) -> None:
    """A table of hosts and their variables (secrets already masked)."""
    table = Table(title=f"inventory {path}", title_justify="left")
    for column in ("cluster", "host", "role", "address", "user", "become", "variables"):
        table.add_column(column, overflow="fold")
    for host in hosts:
        variables = "\n".join(
            f"{k}={v}" for k, v in sorted(host.public_vars().items()) if not k.startswith("ansible_")
        )
        table.add_row(
            host.cluster,
            host.name,
            host.role,
            f"{host.address}:{host.port}",
            host.user,
            "yes" if host.become else "no",
            variables,
        )
    console.print(table)
