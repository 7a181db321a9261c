"""The phase graph of a cluster: dependsOn, cycles, paths, wait semantics, and CRD ordering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxops.layout.findings import Findings
from fluxops.layout.model import (
    BOOTSTRAP_NAME,
    EXPECTED_DEPENDS,
    FLUX_GROUP_SUFFIX,
    MUST_WAIT,
    SHOULD_NOT_WAIT,
    Cluster,
    Phase,
    group_of,
)
from fluxops.layout.schemas import is_builtin_group
from fluxops.layout.sources import line_of


def find_cycles(cluster: Cluster) -> list[list[str]]:
    """Every dependsOn cycle (each once, as a list of phase names starting at its smallest)."""
    graph = {p.name: [d for d in p.depends_on] for p in cluster.phases}
    cycles: set[tuple[str, ...]] = set()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
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

    for name in graph:
        if name not in state:
            visit(name)
    return [list(c) for c in sorted(cycles)]


def check_graph(cluster: Cluster, findings: Findings) -> None:
    """dependsOn targets, cycles, the proposal's dependencies and wait settings."""
    names = {p.name for p in cluster.phases}
    for phase in cluster.phases:
        for i, dep in enumerate(phase.depends_on):
            if dep not in names and dep != BOOTSTRAP_NAME:
                findings.error(
                    "depends-on-missing",
                    f"Kustomization {phase.name} dependsOn {dep!r}, which no Kustomization of cluster "
                    f"{cluster.name} defines (known: {', '.join(sorted(names))})",
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
    for phase in cluster.phases:
        ancestors = cluster.ancestors(phase.name)
        for wanted in EXPECTED_DEPENDS.get(phase.name, ()):
            if cluster.phase(wanted) is not None and wanted not in ancestors:
                findings.error(
                    "depends-on-order",
                    f"phase {phase.name} must depend on {wanted} (directly or transitively); "
                    f"add `- name: {wanted}` to spec.dependsOn",
                    cluster=cluster.name,
                    **{**phase.where, "line": _line(phase, "spec", "dependsOn") or phase.line},
                )
        if phase.name in MUST_WAIT and not phase.wait:
            findings.error(
                "wait",
                f"phase {phase.name} must set spec.wait: true so later phases start only once it is ready",
                cluster=cluster.name,
                **{**phase.where, "line": _line(phase, "spec", "wait") or _line(phase, "spec") or phase.line},
            )
        if phase.name in SHOULD_NOT_WAIT and phase.wait:
            findings.warning(
                "wait",
                f"phase {phase.name} sets wait: true; the proposal has apps not wait "
                "(a failing app blocks nothing)",
                cluster=cluster.name,
                **{**phase.where, "line": _line(phase, "spec", "wait") or phase.line},
            )
        if phase.spec.get("prune") is not True:
            findings.warning(
                "prune",
                f"Kustomization {phase.name} does not set prune: true; removed manifests stay in the cluster",
                cluster=cluster.name,
                **{**phase.where, "line": _line(phase, "spec", "prune") or phase.line},
            )


def _line(phase: Phase, *keys: Any) -> int | None:
    return line_of(phase.src, *keys) if phase.src is not None else None


@dataclass(frozen=True)
class CrdSource:
    """Where a CRD is installed: the phase, and the CRD's group and kind."""

    phase: str
    group: str
    kind: str


def installed_crds(cluster: Cluster) -> dict[tuple[str, str], list[str]]:
    """(group, kind) of every CRD in the built output of each phase -> the phases installing it."""
    found: dict[tuple[str, str], list[str]] = {}
    for phase in cluster.phases:
        for obj in phase.objects:
            if obj.get("kind") != "CustomResourceDefinition":
                continue
            spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
            names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
            key = (str(spec.get("group", "")), str(names.get("kind", "")))
            found.setdefault(key, [])
            if phase.name not in found[key]:
                found[key].append(phase.name)
    return found


def is_custom(obj: dict[str, Any]) -> bool:
    """True for an object whose kind needs a CRD: not built in, not Flux's own."""
    group = group_of(str(obj.get("apiVersion", "")))
    return not is_builtin_group(group) and not group.endswith(FLUX_GROUP_SUFFIX)


def crd_ordering(cluster: Cluster) -> list[tuple[Phase, dict[str, Any], str, str]]:
    """Custom resources applied before their CRD can exist: (phase, object, severity, reason).

    A CRD in the same phase is fine: Flux applies CRDs and namespaces of one Kustomization first.
    A CRD found nowhere in the tree is an error, unless an earlier phase the object's phase waits on
    installs HelmReleases (charts may bring CRDs we cannot see offline): then a warning.
    """
    crds = installed_crds(cluster)
    out: list[tuple[Phase, dict[str, Any], str, str]] = []
    for phase in cluster.phases:
        ancestors = cluster.ancestors(phase.name)
        for obj in phase.objects:
            if not is_custom(obj):
                continue
            group = group_of(str(obj.get("apiVersion", "")))
            kind = str(obj.get("kind", ""))
            where = crds.get((group, kind))
            if where:
                if phase.name in where or ancestors.intersection(where):
                    continue
                out.append(
                    (
                        phase,
                        obj,
                        "error",
                        f"{kind}.{group} is applied in phase {phase.name}, but its CRD is installed by "
                        f"{' and '.join(where)}, which {phase.name} does not depend on "
                        f'("no matches for kind {kind}"); add dependsOn {where[0]}',
                    )
                )
                continue
            charts = [
                p.name
                for p in cluster.phases
                if p.name in ancestors and any(o.get("kind") == "HelmRelease" for o in p.objects)
            ]
            if charts:
                out.append(
                    (
                        phase,
                        obj,
                        "warning",
                        f"no CRD for {kind}.{group} in the tree; assumed to come from a chart of "
                        f"{', '.join(charts)} (put the CRD in the crds phase to make it certain)",
                    )
                )
            else:
                out.append(
                    (
                        phase,
                        obj,
                        "error",
                        f"no phase that {phase.name} depends on installs the CRD of {kind}.{group}; "
                        f"add the CRD to the crds phase",
                    )
                )
    return out
