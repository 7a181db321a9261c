"""Ansible's YAML inventory: top-level groups (usually just ``all``), each with hosts, vars, children."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluxops.inventory.datafile import LineMap
from fluxops.inventory.graph import Graph, Where
from fluxops.inventory.hostnames import HostPatternError, expand

SECTIONS = ("vars", "children", "hosts")
QUOTE_HINT = "YAML reads yes/no/on/off and numbers as values"


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


class YamlInventory:
    """Fills a :class:`Graph` from parsed YAML, in the order Ansible's yaml plugin walks it."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def where(self, node: Any, key: Any = None) -> Where:
        line = node.line_of(key) if isinstance(node, LineMap) else None
        return Where(self.graph.path, line)

    def parse(self, data: Mapping[Any, Any]) -> None:
        """Every top-level key is a group (``all`` is the usual one)."""
        for name, body in data.items():
            self.group(name, body, data)

    def group(self, name: Any, body: Any, parent: Any) -> str:
        where = self.where(parent, name)
        if not isinstance(name, str) or not name:
            raise where.error(f"group name {name!r} is not a string; quote it ({QUOTE_HINT})")
        if body is not None and not isinstance(body, Mapping):
            raise where.error(
                f"group {name!r} must be a mapping of hosts, vars and children, got {_kind(body)}"
            )
        self.graph.add_group(name, where)
        for key, section in (body or {}).items():
            if key not in SECTIONS:
                raise self.where(body, key).error(
                    f"unknown key {key!r} in group {name!r}; a group holds only hosts, vars and children "
                    "(Ansible skips it with a warning)"
                )
            if isinstance(section, str):
                section = {section: None}  # Ansible's shorthand: `hosts: n5`
            if section is None:
                continue
            if not isinstance(section, Mapping):
                raise self.where(body, key).error(
                    f"{key} of group {name!r} must be a mapping, got {_kind(section)}"
                )
            if key == "vars":
                for var, value in section.items():
                    self.graph.set_group_var(
                        name, self.var_name(var, section), value, self.where(section, var)
                    )
            elif key == "children":
                for child, child_body in section.items():
                    child_name = self.group(child, child_body, section)
                    self.graph.add_child(name, child_name, self.where(section, child))
            else:
                for pattern, host_body in section.items():
                    self.hosts(name, pattern, host_body, section)
        return name

    def hosts(self, group: str, pattern: Any, body: Any, section: Any) -> None:
        where = self.where(section, pattern)
        if not isinstance(pattern, str) or not pattern:
            raise where.error(f"host {pattern!r} must be a string; put the name in quotes")
        body = body or None  # Ansible reads an empty value (`n5:`, `n5: ""`) as no variables
        if body is not None and not isinstance(body, Mapping):
            raise where.error(f"host {pattern!r} must be a mapping of variables, got {_kind(body)}")
        try:
            names, port = expand(pattern)
        except HostPatternError as exc:
            raise where.error(f"host {pattern!r}: {exc}") from None
        for host in names:
            self.graph.add_host(host, where, group, port)
            for var, value in (body or {}).items():
                self.graph.set_host_var(host, self.var_name(var, body), value, self.where(body, var))

    def var_name(self, name: Any, node: Any) -> str:
        if not isinstance(name, str):
            raise self.where(node, name).error(
                f"variable name {name!r} is not a string; quote it ({QUOTE_HINT})"
            )
        return name
