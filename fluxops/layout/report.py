"""Render validation findings: grouped by cluster and phase as text, or as JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from fluxops.layout.dot import ordered
from fluxops.layout.findings import Finding, Findings, Severity
from fluxops.layout.tree import Tree

TREE_GROUP = "(tree)"


def _cluster_of(finding: Finding, folders: dict[str, str]) -> str:
    """The finding's cluster; else the cluster whose folder holds its file; else the tree."""
    if finding.cluster:
        return finding.cluster
    for folder, name in folders.items():
        if finding.file.startswith(folder):
            return name
    parts = finding.file.split("/")
    if len(parts) > 3 and parts[:2] == ["k8s", "clusters"]:
        return parts[2]
    return TREE_GROUP


def cluster_folders(tree: Tree) -> dict[str, str]:
    """Each cluster's folder (relative, ending in ``/``, deepest first) -> the cluster's name."""
    folders = {tree.rel(c.folder).rstrip("/") + "/": name for name, c in tree.clusters.items()}
    return dict(sorted(folders.items(), key=lambda kv: -len(kv[0])))


def grouped(findings: Findings, folders: dict[str, str] | None = None) -> dict[str, dict[str, list[Finding]]]:
    """cluster -> phase -> findings (errors first, then by file and line).

    A finding of no cluster goes to the cluster whose folder (``folders``, see
    :func:`cluster_folders`) holds its file.
    """
    groups: dict[str, dict[str, list[Finding]]] = defaultdict(lambda: defaultdict(list))
    for f in findings.items:
        groups[_cluster_of(f, folders or {})][f.phase or "-"].append(f)
    order = {Severity.ERROR: 0, Severity.WARNING: 1}
    return {
        c: {
            p: sorted(fs, key=lambda f: (order[f.severity], f.file, f.line or 0))
            for p, fs in sorted(ph.items())
        }
        for c, ph in sorted(groups.items(), key=lambda kv: (kv[0] == TREE_GROUP, kv[0]))
    }


def summary(tree: Tree, findings: Findings) -> str:
    """The closing line: clusters, phases, builds, errors and warnings."""
    phases = sum(len(c.phases) for c in tree.clusters.values())
    cached = sum(1 for b in tree.builds.values() if b.cached)
    return (
        f"{len(tree.clusters)} cluster(s), {phases} phase(s), {len(tree.builds)} build(s) ({cached} cached): "
        f"{len(findings.errors)} error(s), {len(findings.warnings)} warning(s)"
    )


def text(tree: Tree, findings: Findings) -> str:
    """The human report."""
    lines: list[str] = []
    for cluster, phases in grouped(findings, cluster_folders(tree)).items():
        lines.append(f"cluster {cluster}" if cluster != TREE_GROUP else "tree")
        for phase, items in phases.items():
            lines.append(f"  phase {phase}" if phase != "-" else "  (no phase)")
            for f in items:
                lines.append(f"    {f.severity.upper():7} {f.where}: {f.message} [{f.code}]")
    lines.append(("FAILED " if findings.errors else "OK ") + summary(tree, findings))
    return "\n".join(lines)


def as_json(tree: Tree, findings: Findings) -> str:
    """The machine-readable report."""
    data: dict[str, Any] = {
        "ok": not findings.errors,
        "errors": len(findings.errors),
        "warnings": len(findings.warnings),
        "clusters": {
            name: {
                "phases": [
                    {
                        "name": p.name,
                        "path": p.path,
                        "dependsOn": p.depends_on,
                        "wait": p.wait,
                        "file": p.file,
                    }
                    for p in ordered(c)
                ]
            }
            for name, c in tree.clusters.items()
        },
        "findings": [f.to_json() for f in findings.items],
    }
    return json.dumps(data, indent=2)
