"""The Kustomization graph of a cluster (Flux's rules): dependsOn by namespace and name, cycles, CRD order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxops.layout.findings import Findings
from fluxops.layout.model import Cluster, Key, Phase, group_of
from fluxops.layout.schemas import needs_crd
from fluxops.layout.sources import line_of

ROOT = "(root)"  # stands for a cluster's root folder where a CRD is installed by it


def find_cycles(cluster: Cluster) -> list[list[str]]:
    """Every dependsOn cycle (each once, as the phases' names, starting at the smallest key)."""
    graph = {
        p.key: [d.key for ref in p.depends_refs if (d := cluster.depended(ref)) is not None]
        for p in cluster.phases
    }
    cycles: set[tuple[Key, ...]] = set()
    state: dict[Key, int] = {}
    stack: list[Key] = []

    def visit(node: Key) -> None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :]
                start = cycle.index(min(cycle))
                cycles.add(tuple(cycle[start:] + cycle[:start]))
            elif state.get(dep) is None:
                visit(dep)
        stack.pop()
        state[node] = 2

    for key in graph:
        if key not in state:
            visit(key)
    return [[name for _, name in c] for c in sorted(cycles)]


def check_graph(cluster: Cluster, findings: Findings) -> None:
    """Every dependsOn names a Kustomization of the cluster (namespace and name); no cycles."""
    keys = {p.key for p in cluster.phases} | {cluster.entry.key}
    for phase in cluster.phases:
        for i, (namespace, name) in enumerate(phase.depends_refs):
            if (namespace, name) == cluster.entry.key or cluster.depended((namespace, name)) is not None:
                continue
            elsewhere = sorted(ns for ns, n in keys if n == name)
            hint = (
                f"; there is one in namespace {', '.join(elsewhere)}: set namespace: {elsewhere[0]}"
                if elsewhere
                else f" (known: {', '.join(sorted(n for _, n in keys))})"
            )
            findings.error(
                "depends-on-missing",
                f"Kustomization {phase.name} dependsOn {namespace}/{name}, which no Kustomization of cluster "
                f"{cluster.name} defines{hint}",
                cluster=cluster.name,
                **{**phase.where, "line": _line(phase, "spec", "dependsOn", i) or phase.line},
            )
    for cycle in find_cycles(cluster):
        first = cluster.phase(cycle[0])
        assert first is not None
        findings.error(
            "depends-on-cycle",
            "dependsOn cycle: " + " -> ".join([*cycle, cycle[0]]) + " (Flux waits forever)",
            cluster=cluster.name,
            **{**first.where, "line": _line(first, "spec", "dependsOn") or first.line},
        )


def _line(phase: Phase, *keys: Any) -> int | None:
    return line_of(phase.src, *keys) if phase.src is not None else None


@dataclass(frozen=True)
class CrdIssue:
    """A custom resource whose CRD may not exist when its phase is applied.

    ``case`` is ``unordered`` (the CRD is installed by phases this one does not depend on, named in
    ``installers``), ``charted`` (no CRD in the tree, but a phase this one depends on installs
    HelmReleases, named in ``installers``) or ``nowhere`` (no CRD in the tree at all).
    """

    phase: Phase
    obj: dict[str, Any]
    case: str
    installers: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """``Kind.group`` of the resource."""
        return f"{self.obj.get('kind', '')}.{group_of(str(self.obj.get('apiVersion', '')))}"


def installed_crds(
    cluster: Cluster, root_objects: list[dict[str, Any]] | None = None
) -> dict[tuple[str, str], list[Key]]:
    """(group, kind) of every CRD the cluster applies -> the phases installing it (the root as ROOT)."""
    found: dict[tuple[str, str], list[Key]] = {}
    sources: list[tuple[Key, list[dict[str, Any]]]] = [(("", ROOT), root_objects or [])]
    sources += [(p.key, p.objects) for p in cluster.phases]
    for key, objects in sources:
        for obj in objects:
            if obj.get("kind") != "CustomResourceDefinition":
                continue
            spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
            names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
            crd = (str(spec.get("group", "")), str(names.get("kind", "")))
            found.setdefault(crd, [])
            if key not in found[crd]:
                found[crd].append(key)
    return found


def is_custom(obj: dict[str, Any]) -> bool:
    """True for an object whose kind needs a CRD: not built in (Kubernetes, k3s), not Flux's own."""
    return needs_crd(group_of(str(obj.get("apiVersion", ""))))


def crd_ordering(cluster: Cluster, root_objects: list[dict[str, Any]] | None = None) -> list[CrdIssue]:
    """Custom resources applied before their CRD is certain to exist.

    A CRD in the same phase is fine (Flux applies CRDs and namespaces of one Kustomization first), so
    is one the cluster's root applies, or one a phase this one depends on (transitively) installs.
    """
    crds = installed_crds(cluster, root_objects)
    out: list[CrdIssue] = []
    for phase in cluster.phases:
        ancestors = cluster.ancestors(phase)
        charts: tuple[str, ...] | None = None
        for obj in phase.objects:
            if not is_custom(obj):
                continue
            group = group_of(str(obj.get("apiVersion", "")))
            where = crds.get((group, str(obj.get("kind", ""))))
            if where:
                if phase.key in where or ("", ROOT) in where or ancestors.intersection(where):
                    continue
                out.append(CrdIssue(phase, obj, "unordered", tuple(n for _, n in where)))
                continue
            if charts is None:
                charts = tuple(
                    p.name
                    for p in cluster.phases
                    if p.key in ancestors and any(o.get("kind") == "HelmRelease" for o in p.objects)
                )
            out.append(CrdIssue(phase, obj, "charted" if charts else "nowhere", charts))
    return out
