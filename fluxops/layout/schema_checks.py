"""Every object a cluster's phases apply, checked against its schema."""

from __future__ import annotations

from typing import Any

from fluxops.layout.findings import Findings
from fluxops.layout.locate import label, where
from fluxops.layout.model import Cluster, Phase, group_of
from fluxops.layout.schemas import SchemaChecker, is_builtin_group
from fluxops.layout.tree import Tree


def check_schemas(tree: Tree, cluster: Cluster, checker: SchemaChecker, findings: Findings) -> None:
    """Every object a phase applies, and each phase's own Kustomization, against its schema."""
    items: list[tuple[Phase | None, dict[str, Any]]] = [(p, p.obj) for p in cluster.phases]
    items += [(p, o) for p in cluster.phases for o in p.objects]
    for phase, obj in items:
        problems = checker.check(obj)
        group = group_of(str(obj.get("apiVersion", "")))
        if problems is None:
            if is_builtin_group(group):
                findings.error(
                    "api-version",
                    f"{label(obj)}: apiVersion {obj.get('apiVersion')} is not served for kind "
                    f"{obj.get('kind')} by Kubernetes",
                    **where(tree, cluster, phase, obj, "apiVersion"),
                )
            continue
        for problem in problems:
            add = findings.error if problem.severity == "error" else findings.warning
            code = "api-version" if problem.path[:1] == ("apiVersion",) else "schema"
            add(code, f"{label(obj)}: {problem.message}", **where(tree, cluster, phase, obj, *problem.path))
