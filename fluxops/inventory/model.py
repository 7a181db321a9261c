"""What the rest of fluxops uses: clusters of SSH-reachable hosts with their resolved variables."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fluxops.errors import InventoryError
from fluxops.masking import Secret

DEFAULT_PORT = 22
DEFAULT_USER = "root"
Role = Literal["server", "agent"]
ROLES: tuple[Role, ...] = ("server", "agent")


@dataclass(frozen=True)
class Host:
    """One SSH-reachable node of a cluster, with its k3s role and resolved variables."""

    name: str
    cluster: str
    address: str
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    key_file: Path | None = None
    become: bool = False
    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    vars: Mapping[str, Any] = field(default_factory=dict)
    role: Role = "server"

    @property
    def is_loopback(self) -> bool:
        """True when the address is a literal 127.0.0.0/8 address."""
        return is_loopback(self.address)

    def public_vars(self) -> dict[str, Any]:
        """Variables with every secret value shown as ``***``."""
        return {k: str(v) if isinstance(v, Secret) else v for k, v in self.vars.items()}


@dataclass(frozen=True)
class Cluster:
    """One k3s cluster: an inventory group and its hosts."""

    name: str
    hosts: tuple[Host, ...]
    group: str = ""


@dataclass(frozen=True)
class Inventory:
    """All clusters of one inventory file."""

    path: Path
    clusters: Mapping[str, Cluster]

    @property
    def hosts(self) -> tuple[Host, ...]:
        """Every host, cluster by cluster."""
        return tuple(h for c in self.clusters.values() for h in c.hosts)

    def cluster(self, name: str) -> Cluster:
        """The cluster called ``name``, or an InventoryError listing the known ones."""
        if name not in self.clusters:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise InventoryError(f"unknown cluster {name!r}; clusters here: {known}", path=str(self.path))
        return self.clusters[name]

    def host(self, name: str) -> Host:
        """The host called ``name``, or an InventoryError listing the known ones."""
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts) or "none"
        raise InventoryError(f"unknown host {name!r}; hosts here: {known}", path=str(self.path))

    def select(self, cluster: str | None = None) -> tuple[Host, ...]:
        """The hosts of one cluster, or of all when ``cluster`` is None."""
        return self.cluster(cluster).hosts if cluster else self.hosts


def is_loopback(address: str) -> bool:
    """True when ``address`` is a literal IPv4 address in 127.0.0.0/8."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        return False
