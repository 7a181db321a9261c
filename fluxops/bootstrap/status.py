"""Each phase's state on a cluster: ready or failed, revision, message, age.

``--json`` gives, per cluster, the Kustomizations as ``flux get kustomizations`` lists them (name,
revision, suspended, ready, message), plus namespace, level in the apply order, reason and age
(docs/cli.md, "bootstrap, reconcile and status").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from fluxops.bootstrap.node import Node
from fluxops.bootstrap.phases import plan_phases
from fluxops.errors import FluxopsError
from fluxops.progname import progname
from fluxops.sim.cli_common import human_age

if TYPE_CHECKING:
    from fluxops.inventory import Host


@dataclass
class Row:
    """One Kustomization of a cluster."""

    name: str
    namespace: str
    level: int | None
    ready: str  # True, False or Unknown, as Flux's Ready condition
    reason: str
    revision: str
    suspended: bool
    message: str
    age: str  # since the Ready condition last changed (kubectl's AGE style)


@dataclass
class ClusterStatus:
    """A cluster's phases, or why they could not be read."""

    cluster: str
    host: str
    kustomizations: list[Row] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        """Reached, and every Kustomization Ready."""
        return not self.error and all(r.ready == "True" for r in self.kustomizations)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of docs/cli.md."""
        return {
            "cluster": self.cluster,
            "host": self.host,
            "ok": self.ok,
            "error": self.error or None,
            "kustomizations": [asdict(r) for r in self.kustomizations],
        }


def _age(stamp: str, now: dt.datetime) -> str:
    try:
        when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return human_age(max(0.0, (now - when).total_seconds()))  # a node clock ahead of ours: 0s


def status_of(node: Node, cluster: str, entry: str = "flux-system") -> ClusterStatus:
    """Read the cluster's Kustomizations from the node, in apply order."""
    items = node.kustomizations()
    if not items:
        return ClusterStatus(
            cluster,
            node.name,
            error=f"no Flux Kustomization: not bootstrapped (`{progname()} bootstrap -c {cluster}`)",
        )
    levels = {r.name: r.level for r in plan_phases(items, entry, cluster) if r.state != "skipped"}
    now = dt.datetime.now(dt.UTC)
    rows = []
    for obj in items:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        rows.append(
            Row(
                name=str(meta.get("name")),
                namespace=str(meta.get("namespace") or ""),
                level=levels.get(str(meta.get("name"))),
                ready=str(ready.get("status", "Unknown")),
                reason=str(ready.get("reason", "")),
                revision=str(status.get("lastAppliedRevision") or ""),
                suspended=bool((obj.get("spec") or {}).get("suspend")),
                message=str(ready.get("message", "")),
                age=_age(str(ready.get("lastTransitionTime", "")), now),
            )
        )
    rows.sort(key=lambda r: (r.level if r.level is not None else 1 << 20, r.name))
    return ClusterStatus(cluster, node.name, rows)


def statuses(
    servers: Mapping[str, Host], open_node: Callable[[Host], AbstractContextManager[Node]]
) -> list[ClusterStatus]:
    """Each cluster's status read from its server, every cluster at once; one that cannot be read
    carries the error instead of stopping the others."""

    def one(cluster: str) -> ClusterStatus:
        host = servers[cluster]
        try:
            with open_node(host) as node:
                return status_of(node, cluster)
        except FluxopsError as exc:
            return ClusterStatus(cluster, host.name, error=str(exc))

    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        return list(pool.map(one, servers))
