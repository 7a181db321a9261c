"""``layout.tree``: a cluster's phase graph as text and as Graphviz DOT."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from fluxops.layout.model import PHASE_ORDER, Cluster, Phase, group_of, meta

NAMED_KINDS = ("HelmRelease", "Deployment", "StatefulSet", "DaemonSet", "IPAddressPool", "Middleware")


def installs(phase: Phase) -> list[str]:
    """What a phase applies, summarised: named releases and workloads, counts of the rest."""
    named: dict[str, list[str]] = defaultdict(list)
    counts: Counter[str] = Counter()
    crd_groups: Counter[str] = Counter()
    for obj in phase.objects:
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


def ordered(cluster: Cluster) -> list[Phase]:
    """Phases in dependency order (the proposal's order breaks ties)."""
    rank = {name: i for i, name in enumerate(PHASE_ORDER)}
    done: list[Phase] = []
    remaining = sorted(cluster.phases, key=lambda p: (rank.get(p.name, len(rank)), p.name))
    while remaining:
        names = {p.name for p in done}
        ready = [p for p in remaining if all(d in names or cluster.phase(d) is None for d in p.depends_on)]
        nxt = ready[0] if ready else remaining[0]
        done.append(nxt)
        remaining.remove(nxt)
    return done


def text(cluster: Cluster) -> str:
    """The phase graph as indented text."""
    lines = [f"cluster {cluster.name}"]
    for phase in ordered(cluster):
        flags = ["wait" if phase.wait else "no wait"]
        if phase.decryption.get("provider") == "sops":
            flags.append("sops")
        deps = ", ".join(phase.depends_on) or "-"
        lines.append(f"  {phase.name}  ({', '.join(flags)})  path {phase.path}  dependsOn: {deps}")
        for item in installs(phase) or ["(nothing)"]:
            lines.append(f"      {item}")
    return "\n".join(lines)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _quote(value: str) -> str:
    return f'"{_escape(value)}"'


def dot(cluster: Cluster) -> str:
    """The phase graph as a Graphviz digraph (edges point from a phase to what it waits for)."""
    lines = [
        f"digraph {_quote('flux-' + cluster.name)} {{",
        "  rankdir=LR;",
        "  node [shape=box, fontsize=10];",
    ]
    for phase in ordered(cluster):
        parts = [f"{phase.name} ({'wait' if phase.wait else 'no wait'})", phase.path, *installs(phase)]
        label = '"' + "\\n".join(_escape(p) for p in parts) + '"'
        style = "" if phase.wait else ", style=dashed"
        lines.append(f"  {_quote(phase.name)} [label={label}{style}];")
    names = {p.name for p in cluster.phases}
    for phase in cluster.phases:
        for dep in phase.depends_on:
            attrs = "" if dep in names else " [color=red, label=missing]"
            lines.append(f"  {_quote(phase.name)} -> {_quote(dep)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


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
