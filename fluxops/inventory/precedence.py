"""Every host's variables, merged in Ansible's order of precedence (lowest first).

1. ``all``'s vars in the inventory file
2. each of the host's groups' vars in the inventory file, in Ansible's group order: depth
   (parent before child), then ``ansible_group_priority``, then name (so siblings go alphabetically)
3. ``group_vars/all``
4. ``group_vars/GROUP`` of each of the host's groups, in the same order
5. the host's vars in the inventory file
6. ``host_vars/HOST``

A later layer replaces a variable of an earlier one whole (Ansible's default ``hash_behaviour``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fluxops.inventory.datafile import Vault
from fluxops.inventory.graph import ALL, Graph, Where
from fluxops.inventory.vars_files import Layer, VarsDirs


@dataclass(frozen=True)
class Resolved:
    """An inventory as Ansible sees it: its groups and hosts and each host's variables."""

    graph: Graph
    hostvars: Mapping[str, Mapping[str, Any]]
    origins: Mapping[str, Mapping[str, Where]]


def layers(graph: Graph, vars_dirs: VarsDirs, host: str) -> Iterator[Layer]:
    """The variable layers of ``host``, lowest precedence first."""
    everyone = graph.groups[ALL]
    groups = graph.host_groups(host)
    yield everyone.vars, everyone.origins
    for group in groups:
        yield group.vars, group.origins
    yield vars_dirs.group(ALL)
    for group in groups:
        yield vars_dirs.group(group.name)
    entry = graph.hosts[host]
    yield entry.vars, entry.origins
    yield vars_dirs.host(host)


def resolve(graph: Graph) -> Resolved:
    """Each host's merged variables and where each one was set; a vault value is refused."""
    vars_dirs = VarsDirs(graph.path.parent)
    hostvars: dict[str, dict[str, Any]] = {}
    origins: dict[str, dict[str, Where]] = {}
    for host in graph.hosts:
        values: dict[str, Any] = {}
        where: dict[str, Where] = {}
        for layer_values, layer_origins in layers(graph, vars_dirs, host):
            values.update(layer_values)
            where.update(layer_origins)
        for name, value in values.items():
            _refuse_vault(name, value, where[name])
        hostvars[host] = values
        origins[host] = where
    return Resolved(graph=graph, hostvars=hostvars, origins=origins)


def _refuse_vault(name: str, value: Any, where: Where) -> None:
    vault = _find_vault(value)
    if vault is not None:
        raise Where(where.path, vault.line or where.line).error(
            f"variable {name!r} is vault-encrypted (!vault); vault-encrypted values are not supported yet "
            "(fluxops cannot decrypt it and never uses the ciphertext as the value): keep this variable "
            "out of the inventory fluxops reads"
        )


def _find_vault(value: Any) -> Vault | None:
    if isinstance(value, Vault):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = _find_vault(item)
            if found is not None:
                return found
    return None
