"""Ansible's INI inventory: ``[group]`` host lines, ``[group:vars]`` and ``[group:children]`` sections.

Values are read as Ansible's ini plugin reads them: each ``key=value`` (inline on a host line, or
in a ``:vars`` section) is a Python literal when it parses as one (``5``, ``True``, ``[1, 2]``,
``'text'``) and a string otherwise (``yes``, ``FALSE``, ``0644``). Host lines are split like a
shell line (quotes, ``#`` comments).
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from fluxops.inventory.graph import UNGROUPED, Graph, Where
from fluxops.inventory.hostnames import HostPatternError, expand

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_STATES = ("hosts", "children", "vars")


def parse_value(text: str) -> Any:
    """An INI value: a Python literal when it is one, else the text itself."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:
    """Literal values as Ansible keeps them: tuples and sets become lists, bytes and complex text."""
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value


class IniInventory:
    """Fills a :class:`Graph` from INI text, line by line as Ansible's ini plugin does."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def parse(self, text: str) -> None:
        """Read every line; a group named in ``:children`` or ``:vars`` must be declared somewhere."""
        group, state = UNGROUPED, "hosts"
        pending: dict[str, tuple[str, Where, list[str]]] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            where = Where(self.graph.path, number)
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            section = _SECTION.match(line)
            if section:
                group, state = section.group(1), section.group(2) or "hosts"
                if state not in _STATES:
                    raise where.error(
                        f"section [{group}:{state}] has an unknown type; use [{group}], [{group}:vars] "
                        f"or [{group}:children]"
                    )
                if group not in self.graph.groups:
                    if state == "vars" and group not in pending:
                        pending[group] = ("vars", where, [])
                    self.graph.add_group(group, where)
                if group in pending and state != "vars":
                    if pending[group][0] == "children":
                        self._add_pending_children(group, pending)
                    else:
                        del pending[group]
                continue
            if line.startswith("[") and line.endswith("]"):
                raise where.error(
                    f"invalid section {line!r}: a section is [name], [name:vars] or [name:children], "
                    "with no spaces"
                )
            if state == "hosts":
                self._host_line(line, group, where)
            elif state == "vars":
                name, value = self._assignment(line, where, "a group variable")
                self.graph.set_group_var(group, name, value, where)
            else:
                match = _GROUP_NAME.match(line)
                if not match:
                    raise where.error(f"expected a group name in [{group}:children], got {line!r}")
                child = match.group(1)
                if child in self.graph.groups:
                    self.graph.add_child(group, child, where)
                elif child in pending:
                    pending[child][2].append(group)
                else:
                    pending[child] = ("children", where, [group])
        for name, (state, where, parents) in pending.items():
            if state == "vars":
                raise where.error(
                    f"section [{name}:vars] is for a group that is never declared; add [{name}]"
                )
            raise where.error(
                f"section [{parents[-1]}:children] names group {name!r}, which is never declared; "
                f"add [{name}] (or [{name}:children])"
            )

    def _add_pending_children(self, group: str, pending: dict[str, tuple[str, Where, list[str]]]) -> None:
        _, where, parents = pending[group]
        for parent in parents:
            self.graph.add_child(parent, group, where)
            if parent in pending and pending[parent][0] == "children":
                self._add_pending_children(parent, pending)
        pending.pop(group, None)

    def _host_line(self, line: str, group: str, where: Where) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise where.error(f"cannot split host line {line!r}: {exc}") from None
        pattern = tokens[0]
        try:
            names, port = expand(pattern)
        except HostPatternError as exc:
            raise where.error(f"host {pattern!r}: {exc}") from None
        if pattern.strip().endswith(":") and port is None:
            raise where.error(f"host {pattern!r} ends in ':'; write host:port, or just the host")
        if "---" in (n.strip() for n in names):
            raise where.error("a host named '---': this looks like a YAML file; give it a .yaml name")
        variables = [self._assignment(token, where, "a host variable", strip=False) for token in tokens[1:]]
        for name in names:
            self.graph.add_host(name, where, group, port)
            for var, value in variables:
                self.graph.set_host_var(name, var, value, where)

    def _assignment(self, text: str, where: Where, what: str, *, strip: bool = True) -> tuple[str, Any]:
        if "=" not in text:
            raise where.error(f"expected key=value for {what}, got {text!r}")
        key, value = text.split("=", 1)
        return (key.strip(), parse_value(value.strip())) if strip else (key, parse_value(value))
