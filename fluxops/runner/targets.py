"""Where plays run: a target is a name, a Shell (local or one SSH host) and the host's variables.

The executor only needs something with the Shell protocol (``name``, ``run(argv, stdin=, timeout=,
check=, secrets=)``); inventory hosts become targets over one reused SSH connection each, and a
host with ``ansible_connection: local`` (or a test) runs on this machine.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fluxops import inventory as inv
from fluxops.shell import Connections, Shell, local

ALL = "all"
ROLE_GROUPS = ("server", "agent")


@dataclass(frozen=True)
class Target:
    """One host a play can run on.

    ``groups`` are the names that select it besides its own name and ``all`` (its cluster, its k3s
    role, its inventory groups). ``shell_becomes`` says the shell already runs every command under
    sudo (an inventory host with ``ansible_become``), so the runner does not add it again.
    """

    name: str
    shell: Shell
    vars: Mapping[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    cluster: str = ""
    role: str = ""
    user: str = "root"
    shell_becomes: bool = False

    def matches(self, pattern: str) -> bool:
        """True when ``pattern`` (a host, group, cluster, role or ``all``) selects this target."""
        return pattern in (ALL, self.name) or pattern in self.groups


def local_target(
    name: str = "localhost",
    *,
    vars: Mapping[str, Any] | None = None,
    groups: Iterable[str] = (),
    shell: Shell | None = None,
) -> Target:
    """A target that runs on this machine (real sh, real files), as the current user."""
    return Target(
        name=name,
        shell=shell or local(),
        vars=dict(vars or {}),
        groups=tuple(groups),
        user=getpass.getuser(),
    )


def from_inventory(inventory: inv.Inventory, connections: Connections) -> list[Target]:
    """Every host of ``inventory`` as a target: one pooled SSH shell each, or local for
    ``ansible_connection: local``."""
    resolved = inv.read(inventory.path)
    targets = []
    for host in inventory.hosts:
        groups = [host.cluster, host.role]
        if host.name in resolved.graph.hosts:
            groups += [g.name for g in resolved.graph.host_groups(host.name)]
        is_local = str(host.vars.get("ansible_connection", "ssh")) == "local"
        targets.append(
            Target(
                name=host.name,
                shell=local() if is_local else connections.get(host),
                vars=dict(host.vars),
                groups=tuple(dict.fromkeys(groups)),
                cluster=host.cluster,
                role=host.role,
                user=getpass.getuser() if is_local else host.user,
                shell_becomes=host.become and not is_local,
            )
        )
    return targets


def known_patterns(targets: Sequence[Target]) -> list[str]:
    """Every name that selects some target, for error messages."""
    names = [ALL, *ROLE_GROUPS]
    for target in targets:
        names += [target.name, *target.groups]
    return list(dict.fromkeys(n for n in names if n))


def select(targets: Sequence[Target], patterns: Sequence[str]) -> list[Target]:
    """The targets ``patterns`` select, in target order: Ansible's union, ``&`` intersection and
    ``!`` exclusion."""
    chosen: set[str] = set()
    plain = [p for p in patterns if not p.startswith(("&", "!"))]
    for pattern in plain:
        chosen |= {t.name for t in targets if t.matches(pattern)}
    for pattern in patterns:
        if pattern.startswith("&"):
            chosen &= {t.name for t in targets if t.matches(pattern[1:])}
        elif pattern.startswith("!"):
            chosen -= {t.name for t in targets if t.matches(pattern[1:])}
    return [t for t in targets if t.name in chosen]


def unknown_patterns(targets: Sequence[Target], patterns: Sequence[str]) -> list[str]:
    """The patterns that name no host, group, cluster or role of ``targets``."""
    known = set(known_patterns(targets))
    return [p for p in patterns if p.lstrip("&!") not in known]
