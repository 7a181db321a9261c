"""Clusters, k3s roles and SSH settings of the hosts, from an inventory as Ansible resolves it.

A cluster is a group: by default every child group of ``all`` (``ungrouped`` aside), or the groups
that ``fluxops.clusters`` names (cluster name -> group, e.g. ``{lab: k3s_cluster}`` for an
inventory shaped like k3s-ansible's). A host's role is ``server`` or ``agent``: from its membership
in a group named ``server`` or ``agent`` inside its cluster, else its ``k3s_role`` variable, else
the cluster's first host is the server (unless another one is) and the rest are agents.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from fluxops.errors import InventoryError
from fluxops.inventory.graph import ALL, UNGROUPED, Graph
from fluxops.inventory.hostnames import is_address
from fluxops.inventory.model import DEFAULT_PORT, DEFAULT_USER, ROLES, Cluster, Host, Inventory, Role
from fluxops.inventory.precedence import Resolved
from fluxops.masking import Secret

ROLE_VAR = "k3s_role"
SECRET_NAME_RE = re.compile(r"(password|passwd|token|secret|api_key|private_key(?!_file))", re.I)
# Ansible's boolean words (ansible.module_utils.parsing.convert_bool)
TRUE_WORDS = frozenset({"y", "yes", "on", "1", "true", "t"})
FALSE_WORDS = frozenset({"n", "no", "off", "0", "false", "f"})
# connection variables, the alias that Ansible's ssh plugin prefers first
ADDRESS_VARS = ("ansible_ssh_host", "ansible_host")
PORT_VARS = ("ansible_ssh_port", "ansible_port")
USER_VARS = ("ansible_ssh_user", "ansible_user")
KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
SSH_ARGS_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")


def build(resolved: Resolved, clusters: Mapping[str, str] | None, root: Path) -> Inventory:
    """The inventory's clusters and hosts; ``clusters`` maps cluster names to groups (default: see module)."""
    graph = resolved.graph
    _refuse_shared_names(graph)
    chosen = _cluster_groups(graph, clusters)
    owner: dict[str, str] = {}
    result: dict[str, Cluster] = {}
    for name, group in chosen.items():
        members = graph.group_hosts(group)
        if not members:
            raise graph.groups[group].where.error(
                f"cluster {name!r} (group {group!r}) has no hosts; add hosts to the group or remove it"
            )
        inside = {group, *graph.descendants(group)}
        for host in members:
            if host in owner:
                entry = graph.hosts[host]
                where = next((w for g, w in entry.placed.items() if g in inside), entry.where)
                raise where.error(
                    f"host {host!r} is in two clusters ({owner[host]!r} and {name!r}); a host belongs to one"
                )
            owner[host] = name
        roles = _roles(resolved, name, group, members)
        hosts = tuple(_host(resolved, h, name, roles[h], root) for h in members)
        result[name] = Cluster(name=name, hosts=hosts, group=group)
    return Inventory(path=graph.path, clusters=result)


def _refuse_shared_names(graph: Graph) -> None:
    for name in graph.hosts:
        if name in graph.groups:
            raise graph.hosts[name].where.error(
                f"host {name!r} has the name of a group; Ansible would give the group this host's variables "
                "(and warns 'Found both group and host with same name'): rename the host"
            )


def _cluster_groups(graph: Graph, clusters: Mapping[str, str] | None) -> dict[str, str]:
    if clusters:
        for name, group in clusters.items():
            if group not in graph.groups or group in (ALL, UNGROUPED):
                known = ", ".join(g for g in graph.groups if g not in (ALL, UNGROUPED)) or "none"
                raise InventoryError(
                    f"fluxops.clusters maps cluster {name!r} to group {group!r}, which this inventory "
                    f"does not have; groups here: {known}",
                    path=str(graph.path),
                )
        return dict(clusters)
    loose = graph.groups[UNGROUPED].hosts
    if loose:
        raise graph.hosts[loose[0]].where.error(
            f"host {loose[0]!r} is in no cluster; put it in a group under all (each group under all is a "
            "cluster), or name the cluster groups with fluxops.clusters"
        )
    chosen = {g: g for g in graph.groups[ALL].children if g != UNGROUPED}
    if not chosen:
        raise InventoryError(
            "no clusters: add a group of hosts under all (each group under all is a cluster)",
            path=str(graph.path),
        )
    return chosen


def _roles(resolved: Resolved, cluster: str, group: str, members: list[str]) -> dict[str, Role]:
    graph = resolved.graph
    inside = [group, *graph.descendants(group)]
    by_group = {r: set(graph.group_hosts(r)) for r in ROLES if r in inside}
    roles: dict[str, Role | None] = {}
    for host in members:
        named = [r for r in ROLES if host in by_group.get(r, ())]
        if len(named) > 1:
            raise graph.hosts[host].where.error(
                f"host {host!r} is in both the server and the agent group of cluster {cluster!r}; "
                "a host has one role"
            )
        roles[host] = named[0] if named else _role_var(resolved, host)
    if "server" not in roles.values():
        first = members[0]
        if roles[first] is None:
            roles[first] = "server"
        else:
            raise graph.groups[group].where.error(
                f"cluster {cluster!r} has no server; put a host in a group named 'server' inside it, "
                f"or set {ROLE_VAR}: server on one host"
            )
    return {h: cast(Role, r or "agent") for h, r in roles.items()}


def _role_var(resolved: Resolved, host: str) -> Role | None:
    value = resolved.hostvars[host].get(ROLE_VAR)
    if value is None:
        return None
    if value not in ROLES:
        raise resolved.origins[host][ROLE_VAR].error(
            f"host {host!r}: {ROLE_VAR} must be 'server' or 'agent', got {value!r}"
        )
    return cast(Role, value)


class _Vars:
    """One host's resolved variables, read with types and errors that point at where each was set."""

    def __init__(self, resolved: Resolved, host: str) -> None:
        self.host = host
        self.values = resolved.hostvars[host]
        self.origins = resolved.origins[host]
        self.where = resolved.graph.hosts[host].where

    def first(self, names: tuple[str, ...]) -> tuple[str, Any]:
        for name in names:
            if self.values.get(name) is not None:
                return name, self.values[name]
        return names[-1], None

    def error(self, var: str, message: str) -> InventoryError:
        return self.origins.get(var, self.where).error(f"host {self.host!r}: {message}")

    def text(self, names: tuple[str, ...], what: str) -> str | None:
        var, value = self.first(names)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.error(var, f"{var} must be {what} (a string), got {value!r}")
        return str(value)

    def flag(self, name: str) -> bool:
        """A boolean as Ansible reads one: true/false, yes/no, on/off, 1/0 (any case), y/n, t/f."""
        value = self.values.get(name)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        word = value.strip().lower() if isinstance(value, str) else None
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise self.error(name, f"{name} must be true or false (or yes/no, on/off, 1/0), got {value!r}")

    def port(self) -> int:
        var, value = self.first(PORT_VARS)
        if value is None:
            return DEFAULT_PORT
        try:
            if isinstance(value, bool | float):
                raise ValueError
            port = int(value)
        except (TypeError, ValueError):
            raise self.error(var, f"{var} must be a port number, got {value!r}") from None
        if not 0 < port < 65536:
            raise self.error(var, f"{var} {port} is out of range 1-65535")
        return port


def _host(resolved: Resolved, name: str, cluster: str, role: Role, root: Path) -> Host:
    values = _Vars(resolved, name)
    address = values.text(ADDRESS_VARS, "a hostname or IP address")
    if address is None:
        if not is_address(name) or "[" in name:
            raise values.where.error(
                f"host {name!r} has no address: its name is not an IP address or DNS name; "
                "set ansible_host: <IP or DNS name>"
            )
        address = name
    key_file = values.text(KEY_VARS, "a path")
    known_hosts = values.text(("fluxops_known_hosts_file",), "a path") or _known_hosts_option(values)
    return Host(
        name=name,
        cluster=cluster,
        address=address,
        port=values.port(),
        user=values.text(USER_VARS, "a user name") or DEFAULT_USER,
        key_file=_path(root, key_file),
        become=values.flag("ansible_become"),
        known_hosts=_path(root, known_hosts),
        accept_new_host_key=values.flag("fluxops_accept_new_host_key"),
        vars={k: _masked(v, k) for k, v in values.values.items()},
        role=role,
    )


def _known_hosts_option(values: _Vars) -> str | None:
    """The first UserKnownHostsFile of ``-o`` options in ansible_ssh_common_args/extra_args."""
    for var in SSH_ARGS_VARS:
        text = values.values.get(var)
        if not isinstance(text, str):
            continue
        try:
            words = shlex.split(text)
        except ValueError:
            raise values.error(var, f"{var} cannot be split like a shell line: {text!r}") from None
        options = [w[2:] for w in words if w.startswith("-o") and len(w) > 2]
        options += [b for a, b in itertools.pairwise(words) if a == "-o"]
        for option in options:
            key, _, value = option.replace("=", " ", 1).partition(" ")
            if key.lower() == "userknownhostsfile" and value.strip():
                return value.split()[0]
    return None


def _path(root: Path, value: str | None) -> Path | None:
    """A path from the inventory: ``~`` expanded; relative paths from ``root``, as Ansible takes them
    from the folder it runs in."""
    if value is None:
        return None
    return Path(os.path.abspath(root / Path(value).expanduser()))


def _masked(value: Any, name: str) -> Any:
    """``value`` with the strings of secret-looking variables (and ``!secret`` ones) wrapped in Secret."""
    if isinstance(value, Mapping):
        return {k: _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, name) for v in value]
    if isinstance(value, str) and SECRET_NAME_RE.search(name):
        return Secret(value)
    return value
