"""The variables a task's templates see on one host, lowest precedence first.

1. the host's inventory variables (already resolved with Ansible's precedence)
2. a few facts: ``inventory_hostname``, ``fluxops_role``, ``fluxops_cluster``, ``group_names``,
   ``groups``, ``hostvars``, ``ansible_check_mode``, ``playbook_dir``
3. the play's ``vars`` (each rendered once per host, in order, so a later one may use an earlier one)
4. results ``register`` stored on this host (in this play or an earlier one)
5. ``item`` inside a task with ``loop``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fluxops.runner.targets import ALL, Target

FACT_NAMES = frozenset(
    {
        "inventory_hostname",
        "fluxops_role",
        "fluxops_cluster",
        "group_names",
        "groups",
        "hostvars",
        "ansible_check_mode",
        "playbook_dir",
    }
)
LOOP_VAR = "item"


def groups_of(targets: Sequence[Target]) -> dict[str, list[str]]:
    """Every group name (clusters, roles and inventory groups) with its hosts, and ``all``."""
    groups: dict[str, list[str]] = {ALL: [t.name for t in targets]}
    for target in targets:
        for group in target.groups:
            groups.setdefault(group, []).append(target.name)
    return groups


def host_facts(
    target: Target, groups: Mapping[str, list[str]], *, check: bool, base_dir: Path
) -> dict[str, Any]:
    """The facts of ``target`` other than ``hostvars``."""
    return {
        "inventory_hostname": target.name,
        "fluxops_role": target.role,
        "fluxops_cluster": target.cluster,
        "group_names": sorted(g for g in target.groups if g),
        "groups": {k: list(v) for k, v in groups.items()},
        "ansible_check_mode": check,
        "playbook_dir": str(base_dir),
    }


def hostvars(
    targets: Sequence[Target],
    registered: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, list[str]],
    *,
    check: bool,
    base_dir: Path,
) -> dict[str, dict[str, Any]]:
    """Each host's inventory variables, facts and registered results (as of the start of a play)."""
    return {
        t.name: {
            **t.vars,
            **host_facts(t, groups, check=check, base_dir=base_dir),
            **registered.get(t.name, {}),
        }
        for t in targets
    }


def base(target: Target, facts: Mapping[str, Any], all_hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """Layers 1 and 2 for one host."""
    return {**target.vars, **facts, "hostvars": all_hostvars}
