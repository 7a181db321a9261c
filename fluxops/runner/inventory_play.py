"""A playbook file run on the hosts of an inventory file: what ``invoke play`` calls.

The playbook is loaded and checked before any connection is opened; each host then gets one SSH
connection for the whole run (``fluxops.shell.Connections``), closed at the end.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from fluxops import inventory as inv
from fluxops.runner import playbook as playbooks
from fluxops.runner.execute import Options, Reporter, run
from fluxops.runner.results import Report
from fluxops.runner.targets import from_inventory
from fluxops.shell import Connections


def patterns(text: str | None) -> tuple[str, ...]:
    """``--limit``/``--tags`` text (``a,b`` or ``a:b``) as a list of names."""
    return tuple(p.strip() for p in re.split(r"[,:]", text or "") if p.strip())


def play(
    playbook_path: Path,
    inventory_path: Path,
    *,
    options: Options,
    reporter: Reporter | None = None,
    clusters: Mapping[str, str] | None = None,
    root: Path | None = None,
    connect_timeout: float = 10.0,
    accept_new_host_key: bool = False,
) -> Report:
    """Load and check ``playbook_path``, then run it on the hosts of ``inventory_path``."""
    book = playbooks.load(playbook_path)
    inventory = inv.load(inventory_path, clusters=clusters, root=root)
    with Connections(connect_timeout=connect_timeout, accept_new_host_key=accept_new_host_key) as conns:
        return run(book, from_inventory(inventory, conns), options, reporter)


def options(
    *,
    check: bool,
    diff: bool,
    limit: str | None,
    tags: str | None,
    timeout: float | None,
) -> Options:
    """Options from command-line flags."""
    return Options(
        check=check,
        diff=diff,
        limit=patterns(limit),
        tags=frozenset(patterns(tags)),
        timeout=timeout,
    )
