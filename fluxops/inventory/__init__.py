"""Clusters and hosts from an Ansible inventory, read the way Ansible reads it.

``load(path)`` reads a YAML, JSON or INI inventory file with its ``group_vars/`` and ``host_vars/``,
resolves every host's variables with Ansible's precedence, and groups the hosts into clusters with
their k3s roles and SSH settings. Bad input is an :class:`~fluxops.errors.InventoryError` naming the
file, the line and what to change. Modules: ``sources`` (which kind of file, what is refused),
``datafile`` (YAML 1.1/JSON), ``yaml_format`` and ``ini_format`` (the two formats), ``hostnames``
(host patterns and ranges), ``graph`` (groups and hosts), ``vars_files`` (group_vars/host_vars),
``precedence`` (the merge), ``clusters`` (clusters, roles, connection settings), ``model``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fluxops.inventory import clusters as _clusters
from fluxops.inventory import precedence, sources
from fluxops.inventory.model import Cluster, Host, Inventory, Role, is_loopback
from fluxops.inventory.precedence import Resolved

__all__ = ["Cluster", "Host", "Inventory", "Resolved", "Role", "as_dict", "is_loopback", "load", "read"]


def read(path: Path | str) -> Resolved:
    """Every group, host and resolved host variable of the inventory at ``path``, as Ansible has them."""
    return precedence.resolve(sources.read(Path(path)))


def load(
    path: Path | str, *, clusters: Mapping[str, str] | None = None, root: Path | str | None = None
) -> Inventory:
    """The clusters of the inventory at ``path``.

    ``clusters`` maps cluster names to inventory groups (default: each group under ``all``);
    relative key and known_hosts paths are taken from ``root`` (default: the current folder, as
    Ansible takes them from the folder it runs in).
    """
    base = Path(root) if root is not None else Path.cwd()
    return _clusters.build(read(path), clusters, base)


def as_dict(hosts: Iterable[Host]) -> list[dict[str, Any]]:
    """Hosts as plain data (secrets masked), e.g. for JSON output."""
    return [
        {
            "name": h.name,
            "cluster": h.cluster,
            "role": h.role,
            "address": h.address,
            "port": h.port,
            "user": h.user,
            "key_file": str(h.key_file) if h.key_file else None,
            "become": h.become,
            "vars": h.public_vars(),
        }
        for h in hosts
    ]
