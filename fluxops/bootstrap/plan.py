"""``bootstrap --check``: what a bootstrap would create or change on the cluster, and which phases it
would reconcile, read from the node without changing it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluxops.bootstrap import flux, key
from fluxops.bootstrap.node import FLUX_NAMESPACE, Node
from fluxops.bootstrap.phases import PhaseRun, plan_phases
from fluxops.bootstrap.preflight_local import LocalFacts
from fluxops.bootstrap.target import Target


@dataclass
class Plan:
    """Changes (``(what, action)``: create, update, install, unchanged) and the phases, level by level."""

    cluster: str
    changes: list[tuple[str, str]] = field(default_factory=list)
    phases: list[PhaseRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The plan as data."""
        return {
            "cluster": self.cluster,
            "changes": [{"object": what, "action": action} for what, action in self.changes],
            "phases": [
                {"name": p.name, "level": p.level, "blocks": p.blocks, "state": p.state} for p in self.phases
            ],
            "notes": self.notes,
        }


def _differs(live: dict[str, Any] | None, wanted: dict[str, Any]) -> str:
    if live is None:
        return "create"
    spec = live.get("spec") or {}
    return "unchanged" if all(spec.get(k) == v for k, v in (wanted.get("spec") or {}).items()) else "update"


def plan(node: Node, target: Target, facts: LocalFacts) -> Plan:
    """Compare the node with what bootstrap would put there; nothing is changed."""
    result = Plan(target.cluster)
    result.changes.append(
        (
            f"namespace/{FLUX_NAMESPACE}",
            "unchanged" if node.get_json("namespace", FLUX_NAMESPACE, check=False) is not None else "create",
        )
    )
    result.changes.append(
        (f"secret/{key.SECRET_NAME}", key.wanted(node, key.SECRET_NAME, {key.KEY_ENTRY: facts.identities}))
    )
    result.changes.append(("flux controllers", "unchanged" if flux.installed(node) else "install"))
    entries = flux.deploy_key_entries(target)
    if entries is not None and flux.secret_ref(target):
        result.changes.append(
            (f"secret/{flux.secret_ref(target)}", key.wanted(node, flux.secret_ref(target), entries))
        )
    elif flux.secret_ref(target):
        result.notes.append(
            f"the GitRepository reads its deploy key from secret {flux.secret_ref(target)}, which bootstrap "
            "does not manage here (set flux_deploy_key_file in the inventory)"
        )
    for obj, kind in (
        (target.git_repository, "gitrepositories.source.toolkit.fluxcd.io"),
        (target.kustomization, "kustomizations.kustomize.toolkit.fluxcd.io"),
    ):
        meta = obj["metadata"]
        live = node.get_json(kind, meta["name"], "-n", meta.get("namespace") or FLUX_NAMESPACE, check=False)
        result.changes.append((f"{obj['kind'].lower()}/{meta['name']}", _differs(live, obj)))
    live_phases = node.kustomizations()
    tree = facts.phases or [k for k in live_phases if k["metadata"]["name"] != target.entry]
    result.phases = plan_phases([target.kustomization, *tree], target.entry, target.cluster)
    return result
