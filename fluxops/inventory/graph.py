"""Groups and hosts as Ansible's inventory holds them, with each variable's file and line.

One graph per inventory: a group name is global (the same name under two parents is one group),
``all`` and ``ungrouped`` always exist, a group without a parent becomes a child of ``all`` and a
host in no group goes to ``ungrouped`` - the rules of Ansible's ``InventoryData``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.errors import InventoryError

ALL = "all"
UNGROUPED = "ungrouped"
PRIORITY_VAR = "ansible_group_priority"


@dataclass(frozen=True)
class Where:
    """A place in a file: where a group, host or variable was written."""

    path: Path
    line: int | None = None

    def error(self, message: str) -> InventoryError:
        """An InventoryError pointing here."""
        return InventoryError(message, path=str(self.path), line=self.line)


@dataclass
class Group:
    """One inventory group: its own variables, its hosts and child groups, in file order."""

    name: str
    where: Where
    vars: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Where] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    priority: int = 1
    depth: int = 0


@dataclass
class Host:
    """One inventory host: the variables the inventory file gives it, its direct groups and where each
    membership was written."""

    name: str
    where: Where
    vars: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Where] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    placed: dict[str, Where] = field(default_factory=dict)


class Graph:
    """Groups and hosts of one inventory, built the way Ansible builds them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups: dict[str, Group] = {}
        self.hosts: dict[str, Host] = {}
        self.add_group(ALL, Where(path))
        self.add_group(UNGROUPED, Where(path))
        self.add_child(ALL, UNGROUPED, Where(path))

    def add_group(self, name: str, where: Where) -> Group:
        """The group ``name``, created on first mention."""
        if name not in self.groups:
            self.groups[name] = Group(name=name, where=where)
        return self.groups[name]

    def add_host(self, name: str, where: Where, group: str | None = None, port: int | None = None) -> Host:
        """The host ``name``, created on first mention (``port`` counts only then, as in Ansible)."""
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = Host(name=name, where=where)
            if port is not None:
                self.set_host_var(name, "ansible_port", port, where)
        if group is not None:
            members = self.groups[group].hosts
            if name not in members:
                members.append(name)
            if group not in host.groups:
                host.groups.append(group)
                host.placed[group] = where
        return host

    def add_child(self, parent: str, child: str, where: Where) -> None:
        """Make group ``child`` a child of group ``parent``; a loop is an error."""
        if parent == child or parent in self.descendants(child):
            raise where.error(f"group {child!r} under {parent!r} makes a loop: a group cannot contain itself")
        group = self.groups[parent]
        if child not in group.children:
            group.children.append(child)
        kid = self.groups[child]
        if parent not in kid.parents:
            kid.parents.append(parent)

    def set_group_var(self, group: str, name: str, value: Any, where: Where) -> None:
        """Set a group variable; ``ansible_group_priority`` sets the group's priority instead."""
        target = self.groups[group]
        if name == PRIORITY_VAR:
            try:
                target.priority = int(value)
            except (TypeError, ValueError):
                raise where.error(
                    f"group {group!r}: {PRIORITY_VAR} must be a whole number, got {value!r}"
                ) from None
            return
        target.vars[name] = value
        target.origins[name] = where

    def set_host_var(self, host: str, name: str, value: Any, where: Where) -> None:
        """Set a variable of one host (a later value replaces an earlier one)."""
        target = self.hosts[host]
        target.vars[name] = value
        target.origins[name] = where

    def descendants(self, name: str) -> list[str]:
        """Every group below ``name``, nearest first."""
        seen: list[str] = []
        level = list(self.groups[name].children)
        while level:
            fresh = [g for g in dict.fromkeys(level) if g not in seen]
            seen.extend(fresh)
            level = [c for g in fresh for c in self.groups[g].children]
        return seen

    def ancestors(self, name: str) -> set[str]:
        """Every group above ``name``."""
        found: set[str] = set()
        todo = list(self.groups[name].parents)
        while todo:
            group = todo.pop()
            if group not in found:
                found.add(group)
                todo.extend(self.groups[group].parents)
        return found

    def reconcile(self) -> None:
        """Ansible's last step: orphan groups join ``all``, hosts in no group join ``ungrouped``."""
        for group in list(self.groups.values()):
            if group.name != ALL and not group.parents:
                self.add_child(ALL, group.name, group.where)
        ungrouped = self.groups[UNGROUPED]
        for host in self.hosts.values():
            others = set(host.groups) - {ALL, UNGROUPED}
            if UNGROUPED in host.groups and others:
                ungrouped.hosts.remove(host.name)
                host.groups.remove(UNGROUPED)
            elif not others and UNGROUPED not in host.groups:
                self.add_host(host.name, host.where, UNGROUPED)
        self._set_depths()

    def _set_depths(self) -> None:
        """Each group's depth: its longest path from ``all`` (Ansible sorts groups by it)."""
        order = [ALL, *self.descendants(ALL)]
        for _ in range(len(order)):
            changed = False
            for name in order:
                for child in self.groups[name].children:
                    depth = self.groups[name].depth + 1
                    if self.groups[child].depth < depth:
                        self.groups[child].depth = depth
                        changed = True
            if not changed:
                break

    def host_groups(self, host: str) -> list[Group]:
        """The host's groups but ``all`` (direct and inherited), in Ansible's order: depth, priority, name."""
        names: set[str] = set()
        for group in self.hosts[host].groups:
            names.add(group)
            names |= self.ancestors(group)
        names.discard(ALL)
        return sorted((self.groups[n] for n in names), key=lambda g: (g.depth, g.priority, g.name))

    def group_hosts(self, name: str) -> list[str]:
        """Every host of the group and its descendants: its own first, then level by level."""
        hosts: list[str] = []
        for group in [name, *self.descendants(name)]:
            hosts.extend(h for h in self.groups[group].hosts if h not in hosts)
        return hosts
