"""When Flux applies a cluster's phases: levels from the dependsOn graph, and what each phase installs."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any

from fluxops.layout.model import (
    BOOTSTRAP_NAME,
    PHASE_ORDER,
    Cluster,
    Phase,
    group_of,
    is_flux_kustomization,
    meta,
)

NAMED_KINDS = ("HelmRelease", "Deployment", "StatefulSet", "DaemonSet", "IPAddressPool", "Middleware")


@dataclass(frozen=True)
class ApplyOrder:
    """A cluster's phases level by level.

    ``levels[0]`` holds the phases that wait for no other phase; a phase sits one level after the
    latest phase it depends on, so the phases of one level are applied in parallel. ``stuck`` holds
    the phases Flux never applies (a dependsOn no Kustomization defines, a dependsOn cycle, or
    waiting on such a phase); ``why`` gives the reason for each by name.
    """

    levels: list[list[Phase]]
    stuck: list[Phase]
    why: dict[str, str]

    def level_of(self, name: str) -> int | None:
        """The 1-based level of the phase called ``name`` (None when stuck or unknown)."""
        return next((i for i, level in enumerate(self.levels, 1) if any(p.name == name for p in level)), None)


def _sort_key(phase: Phase) -> tuple[int, str]:
    rank = PHASE_ORDER.index(phase.name) if phase.name in PHASE_ORDER else len(PHASE_ORDER)
    return rank, phase.name


def _in_cycle(start: Phase, by_name: dict[str, Phase]) -> bool:
    seen: set[str] = set()
    stack = list(start.depends_on)
    while stack:
        name = stack.pop()
        if name == start.name:
            return True
        if name in by_name and name not in seen:
            seen.add(name)
            stack.extend(by_name[name].depends_on)
    return False


def _why_stuck(cluster: Cluster, phase: Phase, stuck: dict[str, Phase]) -> str:
    missing = missing_dependencies(cluster, phase)
    if missing:
        return f"the cluster has no Kustomization {', '.join(missing)}"
    if _in_cycle(phase, stuck):
        return "in a dependsOn cycle"
    return f"waits for {', '.join(d for d in phase.depends_on if d in stuck)}, which is never applied"


def apply_order(cluster: Cluster) -> ApplyOrder:
    """Level the phases by their dependsOn graph (names within a level sort by the usual phase order)."""
    placed = {BOOTSTRAP_NAME}  # the bootstrap Kustomization applies the phases: it is there first
    levels: list[list[Phase]] = []
    remaining = sorted(cluster.phases, key=_sort_key)
    while remaining:
        level = [p for p in remaining if all(d in placed for d in p.depends_on)]
        if not level:
            break
        levels.append(level)
        placed.update(p.name for p in level)
        remaining = [p for p in remaining if p.name not in placed]
    stuck = {p.name: p for p in remaining}
    return ApplyOrder(levels, remaining, {p.name: _why_stuck(cluster, p, stuck) for p in remaining})


def ordered(cluster: Cluster) -> list[Phase]:
    """Phases in an order Flux can apply them (level by level), the phases it never applies last."""
    order = apply_order(cluster)
    return [p for level in order.levels for p in level] + order.stuck


def missing_dependencies(cluster: Cluster, phase: Phase) -> list[str]:
    """The dependsOn names of ``phase`` no Kustomization of the cluster defines (bootstrap excepted)."""
    names = {p.name for p in cluster.phases} | {BOOTSTRAP_NAME}
    return [d for d in phase.depends_on if d not in names]


def health_checks(phase: Phase) -> list[str]:
    """The names of the objects in ``spec.healthChecks``: what the phase is Ready after."""
    checks = phase.spec.get("healthChecks")
    return [
        str(c.get("name", "?")) for c in (checks if isinstance(checks, list) else []) if isinstance(c, dict)
    ]


def blocks(phase: Phase) -> bool:
    """True when what depends on the phase waits for more than its apply: ``wait`` or ``healthChecks``."""
    return phase.wait or bool(health_checks(phase))


def markers(phase: Phase) -> list[str]:
    """``wait``, ``health: NAMES`` (healthChecks without wait) or ``no wait``, and ``sops`` when the
    phase decrypts SOPS secrets."""
    checks = health_checks(phase)
    out = ["wait" if phase.wait else f"health: {', '.join(checks)}" if checks else "no wait"]
    if phase.decryption.get("provider") == "sops":
        out.append("sops")
    return out


def components(cluster: Cluster) -> dict[str, list[Phase]]:
    """The Kustomizations each Kustomization applies (its components), by the applier's name."""
    by_key = {p.key: p for p in cluster.phases}
    out: dict[str, list[Phase]] = {}
    for phase in cluster.phases:
        found = [
            by_key[key]
            for obj in phase.objects
            if is_flux_kustomization(obj)
            and (key := (meta(obj)[1] or phase.namespace, meta(obj)[0])) in by_key
            and key != phase.key
        ]
        if found:
            out[phase.name] = found
    return out


def top_level(cluster: Cluster) -> Cluster:
    """The cluster's phases without their components, each phase's dependsOn on a component read as
    one on the phase applying it: the graph ``layout.tree`` levels."""
    applied_by = {c.name: parent for parent, found in components(cluster).items() for c in found}

    def root(name: str) -> str:
        seen = set()
        while name in applied_by and name not in seen:
            seen.add(name)
            name = applied_by[name]
        return name

    phases = []
    for p in cluster.phases:
        if p.name in applied_by:
            continue
        deps = [{"name": root(d)} for d in dict.fromkeys(p.depends_on) if root(d) != p.name]
        spec = {**p.spec, "dependsOn": deps}
        phases.append(replace(p, obj={**p.obj, "spec": spec}))
    return replace(cluster, phases=phases)


def installs(phase: Phase, drawn: bool = False) -> list[str]:
    """What a phase applies, summarised: named releases and workloads, counts of the rest (without
    the Kustomizations it applies when ``drawn``: they are drawn beneath it)."""
    named: dict[str, list[str]] = defaultdict(list)
    counts: Counter[str] = Counter()
    crd_groups: Counter[str] = Counter()
    for obj in phase.objects:
        if drawn and is_flux_kustomization(obj):
            continue
        kind = str(obj.get("kind", "?"))
        if kind == "CustomResourceDefinition":
            spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
            crd_groups[str(spec.get("group", "?"))] += 1
        elif kind in NAMED_KINDS:
            named[kind].append(meta(obj)[0])
        else:
            counts[kind] += 1
    out = [f"{kind}: {', '.join(sorted(names))}" for kind, names in sorted(named.items())]
    out += ["CRDs: " + ", ".join(f"{g} ({n})" for g, n in sorted(crd_groups.items()))] if crd_groups else []
    out += [", ".join(f"{kind} x{n}" for kind, n in sorted(counts.items()))] if counts else []
    return out


def phase_summary(cluster: Cluster) -> list[dict[str, Any]]:
    """The phase graph as data (for JSON)."""
    return [
        {
            "name": p.name,
            "path": p.path,
            "dependsOn": p.depends_on,
            "wait": p.wait,
            "installs": installs(p),
            "groups": sorted({group_of(str(o.get("apiVersion", ""))) for o in p.objects}),
        }
        for p in ordered(cluster)
    ]


def as_json(cluster: Cluster) -> dict[str, Any]:
    """``layout.tree --json`` for one cluster (docs/cli.md): its phases level by level, in apply order."""
    order = apply_order(cluster)
    missing = {p.name: missing_dependencies(cluster, p) for p in cluster.phases}

    def phase(p: Phase, level: int | None, group: list[Phase]) -> dict[str, Any]:
        return {
            "name": p.name,
            "namespace": p.namespace,
            "level": level,
            "parallel_with": [q.name for q in group if q is not p],
            "path": p.path,
            "file": p.file,
            "line": p.line,
            "dependsOn": p.depends_on,
            "missing": missing[p.name],
            "wait": p.wait,
            "sops": "sops" in markers(p),
            "installs": installs(p),
            "never_applied": order.why.get(p.name),
        }

    phases = [phase(p, n, level) for n, level in enumerate(order.levels, 1) for p in level]
    return {
        "cluster": cluster.name,
        "levels": len(order.levels),
        "phases": phases + [phase(p, None, []) for p in order.stuck],
    }
