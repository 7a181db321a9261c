"""Every object a cluster's phases apply, checked against the schema the cluster serves for it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from fluxops.layout.findings import Findings, listing
from fluxops.layout.locate import label, where
from fluxops.layout.model import Cluster, Phase
from fluxops.layout.schemas import SchemaChecker, crd_objects
from fluxops.layout.tree import Tree

UNKNOWN = "schema unknown; CRD not in this repository"


def check_schemas(tree: Tree, cluster: Cluster, checker: SchemaChecker, findings: Findings) -> None:
    """Every object a phase applies, and each phase's own Kustomization, against its schema.

    Custom resources are checked against the CRDs the cluster applies (any phase, or its root) and
    those vendored in charts' ``crds/`` folders; a kind with no schema anywhere is a warning.
    """
    catalog = checker.catalog(cluster.name, cluster_crds(tree, cluster))
    if catalog.note:
        runs = catalog.runs
        findings.warning(
            "kubernetes-version", catalog.note, file=tree.rel(Path(runs.file)) if runs.file else ""
        )
    items: list[tuple[Phase | None, dict[str, Any]]] = [(p, p.obj) for p in cluster.phases]
    items += [(p, o) for p in cluster.phases for o in p.objects]
    unknown: dict[tuple[Any, ...], tuple[dict[str, Any], list[str]]] = {}
    for phase, obj in items:
        problems = checker.check(obj, catalog)
        if problems is None:
            # one warning per place and kind: a component used by many apps is named once, with its objects
            at = where(tree, cluster, phase, obj, "kind")
            key = (at.get("file"), at.get("line"), obj.get("apiVersion"), obj.get("kind"))
            unknown.setdefault(key, (at, []))[1].append(label(obj))
            continue
        for problem in problems:
            add = findings.error if problem.severity == "error" else findings.warning
            code = "api-version" if problem.path[:1] == ("apiVersion",) else "schema"
            add(code, f"{label(obj)}: {problem.message}", **where(tree, cluster, phase, obj, *problem.path))
    for (_, _, api_version, kind), (at, labels) in unknown.items():
        findings.warning("schema-unknown", f"{listing(labels)}: {UNKNOWN} ({api_version} {kind})", **at)


def cluster_crds(tree: Tree, cluster: Cluster) -> list[tuple[dict[str, Any], str]]:
    """(CRD object, where it is defined) for every CRD the cluster applies, then every vendored chart CRD."""
    found = []
    applied = [*tree.root_objects(cluster.name), *(o for p in cluster.phases for o in p.objects)]
    for obj in crd_objects(applied):
        src = tree.source_of(obj, cluster.name)
        found.append((obj, src.file if src is not None else f"cluster {cluster.name}"))
    return found + chart_crds(tree)


def chart_crds(tree: Tree) -> list[tuple[dict[str, Any], str]]:
    """CRDs in the ``crds/`` folder of a Helm chart vendored in the tree (a folder with Chart.yaml)."""
    found = []
    charts: dict[PurePosixPath, bool] = {}
    for file, docs in tree.sources.docs.items():
        parts = PurePosixPath(file).parts[:-1]
        if "crds" not in parts:
            continue
        chart = PurePosixPath(*parts[: len(parts) - 1 - parts[::-1].index("crds")])
        if chart not in charts:
            charts[chart] = (tree.repo.root / chart / "Chart.yaml").is_file()
        if charts[chart]:
            found += [(d.data, file) for d in docs if isinstance(d.data, dict)]
    return [(obj, file) for obj, file in found if crd_objects([obj])]
