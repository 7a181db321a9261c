"""Repository conventions checked on top of Flux's own rules: named policies made of named rules.

One policy exists, ``fluxops-phases``: this repository's layout (a cluster applies five phase
Kustomizations, crds -> infrastructure + storage -> infrastructure-config -> apps; a phase may apply
component Kustomizations of its own, which are not phases). It is on when
``fluxops.layout.policy`` names it (this repository's invoke.yaml does), off otherwise. Each
finding's code is its rule's name and its message ends with the policy's name. docs/validate.md
describes every rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fluxops.errors import LayoutError
from fluxops.layout.findings import Findings
from fluxops.layout.graph import CrdIssue, crd_ordering
from fluxops.layout.locate import label, where
from fluxops.layout.model import (
    EXPECTED_DEPENDS,
    MUST_WAIT,
    PHASE_ORDER,
    SHOULD_NOT_WAIT,
    Cluster,
    Key,
    Phase,
    is_flux_kustomization,
    meta,
)
from fluxops.layout.sources import line_of
from fluxops.layout.tree import Tree

FLUXOPS_PHASES = "fluxops-phases"
CRDS_PHASE = "crds"
LEGACY_FOLDER = "infrastructure"  # beside clusters/ and base/: the layout the phases replaced

RULES: dict[str, str] = {
    "phase-names": "every Kustomization the cluster folder applies is one of "
    + ", ".join(PHASE_ORDER)
    + "; those a phase applies are its components (warning)",
    "phase-order": "each phase depends (directly or transitively) on the phases before it",
    "wait-blocking": "crds, infrastructure, storage and infrastructure-config set spec.wait: true, or "
    "spec.healthChecks naming what later phases need",
    "apps-nonblocking": "apps does not set wait: true (warning)",
    "prune": "every phase sets prune: true (warning)",
    "crds-phase-only": "CustomResourceDefinitions are applied by the crds phase only",
    "crd-order": "a custom resource's phase depends on the phase installing its CRD (an error, where Flux's "
    "rules warn); a CRD in no phase is an error unless a phase it depends on installs charts (warning)",
    "no-legacy-folders": "no infrastructure/ folder beside the clusters' folder's parent",
    "no-kustomization": "every folder a Kustomization builds has its own kustomization.yaml, so plain "
    "kustomize builds it as Flux does (warning)",
}


def known(name: str | None) -> str | None:
    """The policy ``name`` if it exists (None stays None); LayoutError naming the known ones if not."""
    if name is None or name in POLICIES:
        return name
    raise LayoutError(f"unknown layout policy {name!r} (fluxops.layout.policy); known: {', '.join(POLICIES)}")


def check(name: str | None, tree: Tree, findings: Findings) -> None:
    """The findings of policy ``name`` (none when it is None)."""
    if name is not None:
        POLICIES[known(name) or name](tree, findings)


def _check_fluxops_phases(tree: Tree, findings: Findings) -> None:
    for cluster in tree.clusters.values():
        _phase_rules(cluster, Rule(findings, cluster))
        _crds_outside(tree, cluster, findings)
        for issue in crd_ordering(cluster, tree.root_objects(cluster.name)):
            _crd_order(tree, cluster, issue, findings)
    for cluster, folder, where_ in tree.generated:
        findings.warning(
            "no-kustomization",
            f"{folder} has no kustomization.yaml; Flux generates one from every manifest below it "
            f"(policy {FLUXOPS_PHASES})",
            cluster=cluster,
            **where_,
        )
    _legacy(tree, findings)


class Rule:
    """Adds a finding for a rule of fluxops-phases at a phase's line."""

    def __init__(self, findings: Findings, cluster: Cluster) -> None:
        self.findings = findings
        self.cluster = cluster

    def __call__(self, rule: str, severity: str, phase: Phase, message: str, *keys: Any) -> None:
        add = self.findings.error if severity == "error" else self.findings.warning
        line = (line_of(phase.src, *keys) if phase.src is not None and keys else None) or phase.line
        where_ = {**phase.where, "line": line}
        add(rule, f"{message} (policy {FLUXOPS_PHASES})", cluster=self.cluster.name, **where_)


def components(cluster: Cluster) -> set[Key]:
    """(namespace, name) of the Kustomizations a phase applies: its components, not phases."""
    return {
        (meta(obj)[1] or phase.namespace, meta(obj)[0])
        for phase in cluster.phases
        for obj in phase.objects
        if is_flux_kustomization(obj)
    }


def _blocks(phase: Phase) -> bool:
    """True when Flux marks the phase Ready only once what it applies is healthy: ``wait: true``, or
    ``healthChecks`` naming the components later phases need (the others do not hold it back).
    """
    checks = phase.spec.get("healthChecks")
    return phase.wait or (isinstance(checks, list) and bool(checks))


def _phase_rules(cluster: Cluster, rule: Rule) -> None:
    parts = components(cluster)
    for phase in cluster.phases:
        ancestors = {name for _, name in cluster.ancestors(phase)}
        if phase.name not in PHASE_ORDER and phase.key not in parts:
            rule(
                "phase-names",
                "warning",
                phase,
                f"Kustomization {phase.name} is not a phase ({', '.join(PHASE_ORDER)})",
                "metadata",
                "name",
            )
        for wanted in EXPECTED_DEPENDS.get(phase.name, ()):
            if cluster.phase(wanted) is not None and wanted not in ancestors:
                rule(
                    "phase-order",
                    "error",
                    phase,
                    f"phase {phase.name} must depend on {wanted} (directly or transitively); "
                    f"add `- name: {wanted}` to spec.dependsOn",
                    "spec",
                    "dependsOn",
                )
        if phase.name in MUST_WAIT and not _blocks(phase):
            rule(
                "wait-blocking",
                "error",
                phase,
                f"phase {phase.name} must set spec.wait: true (or spec.healthChecks) so later phases start "
                "only once it is ready",
                "spec",
                "wait",
            )
        if phase.name in SHOULD_NOT_WAIT and phase.wait:
            rule(
                "apps-nonblocking",
                "warning",
                phase,
                f"phase {phase.name} sets wait: true; apps should not wait (a failing app blocks nothing)",
                "spec",
                "wait",
            )
        if phase.spec.get("prune") is not True:
            rule(
                "prune",
                "warning",
                phase,
                f"Kustomization {phase.name} does not set prune: true; removed manifests stay in the cluster",
                "spec",
                "prune",
            )


def _crds_outside(tree: Tree, cluster: Cluster, findings: Findings) -> None:
    """CustomResourceDefinitions applied by a phase other than crds (when the cluster has one)."""
    if cluster.phase(CRDS_PHASE) is None:
        return
    for phase in cluster.phases:
        if phase.name == CRDS_PHASE:
            continue
        for obj in phase.objects:
            if obj.get("kind") == "CustomResourceDefinition":
                findings.error(
                    "crds-phase-only",
                    f"{label(obj)} is applied by phase {phase.name}; move it to the {CRDS_PHASE} phase "
                    f"(policy {FLUXOPS_PHASES})",
                    **where(tree, cluster, phase, obj),
                )


def _crd_order(tree: Tree, cluster: Cluster, issue: CrdIssue, findings: Findings) -> None:
    name = issue.phase.name
    if issue.case == "unordered":
        add, reason = (
            findings.error,
            f"{issue.kind} is applied in phase {name}, but its CRD is installed by "
            f"{' and '.join(issue.installers)}, which {name} does not depend on; add dependsOn "
            f"{issue.installers[0]}",
        )
    elif issue.case == "charted":
        add, reason = (
            findings.warning,
            f"no CRD for {issue.kind} in the tree; assumed to come from a chart of "
            f"{', '.join(issue.installers)} (put the CRD in the {CRDS_PHASE} phase to make it certain)",
        )
    else:
        add, reason = (
            findings.error,
            f"no phase that {name} depends on installs the CRD of {issue.kind}; add the CRD to the "
            f"{CRDS_PHASE} phase",
        )
    add(
        "crd-order",
        f"{label(issue.obj)}: {reason} (policy {FLUXOPS_PHASES})",
        **where(tree, cluster, issue.phase, issue.obj),
    )


def _legacy(tree: Tree, findings: Findings) -> None:
    """``infrastructure/`` beside the folder holding the clusters' folder (k8s/infrastructure here)."""
    tops = sorted({c.folder.parent.parent for c in tree.clusters.values()})
    for top in tops:
        legacy = top / LEGACY_FOLDER
        if legacy.exists() and top.is_relative_to(tree.repo.root):
            findings.error(
                "no-legacy-folders",
                f"{tree.rel(legacy)}/ is the legacy layout the phases replaced; move what it holds to a "
                f"base folder or a cluster overlay and delete it (policy {FLUXOPS_PHASES})",
                file=tree.rel(legacy),
            )


POLICIES: dict[str, Callable[[Tree, Findings], None]] = {FLUXOPS_PHASES: _check_fluxops_phases}
