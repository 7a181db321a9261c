"""``layout.validate``: every check over a loaded tree, as one list of findings."""

from __future__ import annotations

from pathlib import Path

from fluxops.layout import graph, secrets_check
from fluxops.layout.findings import Findings
from fluxops.layout.locate import label, where
from fluxops.layout.model import BOOTSTRAP_NAME, Cluster, meta
from fluxops.layout.schema_checks import check_schemas
from fluxops.layout.schemas import SchemaChecker
from fluxops.layout.site_checks import check_site_values
from fluxops.layout.sources import line_of
from fluxops.layout.tree import Tree, load

SCHEMA_CACHE = "schemas.json"
CHART_SOURCE_KINDS = ("HelmRepository", "GitRepository", "Bucket", "OCIRepository", "HelmChart")


def validate(
    root: Path,
    cluster: str | None = None,
    *,
    jobs: int | None = None,
    cache: bool = True,
    key_dir: Path | None = None,
) -> tuple[Tree, Findings]:
    """Load, build and check the tree (or one cluster); the findings say what is wrong and where.

    With ``key_dir`` (the key store) encrypted files whose cluster key is there are decrypted to
    verify their MACs; without it only an environment key (SOPS_AGE_KEY_FILE, ...) is used.
    """
    tree = load(root, cluster, jobs=jobs, cache=cache)
    findings = tree.findings
    cache_file = tree.repo.cache_dir.parent / SCHEMA_CACHE if cache else None
    checker = SchemaChecker(cache_file, root=tree.repo.root)
    for c in tree.clusters.values():
        check_schemas(tree, c, checker, findings)
        graph.check_graph(c, findings)
        check_crd_order(tree, c, findings)
        check_chart_sources(tree, c, findings)
        check_phase_sources(tree, c, findings)
        secrets_check.check_decryption(c, findings)
        check_built_secrets(tree, c, findings)
    checker.save()
    check_site_values(tree, findings)  # the inventory named by invoke.yaml, when there is one
    only = ("k8s/base/", f"k8s/clusters/{cluster}/") if cluster else ()
    secrets_check.check_files(tree.repo.root, tree.sources, findings, only, key_dir)
    return tree, findings


def check_crd_order(tree: Tree, cluster: Cluster, findings: Findings) -> None:
    """Custom resources only in phases that wait on the phase installing their CRD."""
    for phase, obj, severity, reason in graph.crd_ordering(cluster):
        add = findings.error if severity == "error" else findings.warning
        add("crd-order", f"{label(obj)}: {reason}", **where(tree, cluster, phase, obj))


def check_chart_sources(tree: Tree, cluster: Cluster, findings: Findings) -> None:
    """Each HelmRelease's chart source exists among the cluster's objects."""
    known = set()
    for phase in cluster.phases:
        for obj in [phase.obj, *phase.objects]:
            if obj.get("kind") in CHART_SOURCE_KINDS:
                name, namespace = meta(obj)
                known.add((obj["kind"], name, namespace))
    for phase in cluster.phases:
        for obj in phase.objects:
            if obj.get("kind") != "HelmRelease":
                continue
            name, namespace = meta(obj)
            spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
            chart = (
                ((spec.get("chart") or {}).get("spec") or {}) if isinstance(spec.get("chart"), dict) else {}
            )
            ref, path = chart.get("sourceRef"), ("spec", "chart", "spec", "sourceRef")
            if not isinstance(ref, dict):
                ref, path = spec.get("chartRef"), ("spec", "chartRef")
            if not isinstance(ref, dict):
                continue
            key = (str(ref.get("kind", "")), str(ref.get("name", "")), str(ref.get("namespace") or namespace))
            if key not in known:
                findings.error(
                    "chart-source",
                    f"{label(obj)}: its chart source {key[0]} {key[2]}/{key[1]} is defined in no phase of "
                    f"cluster {cluster.name}",
                    **where(tree, cluster, phase, obj, *path),
                )


def check_phase_sources(tree: Tree, cluster: Cluster, findings: Findings) -> None:
    """Each phase's sourceRef exists in the cluster (bootstrap's flux-system GitRepository always does)."""
    known = {
        (str(o.get("kind")), *meta(o))
        for phase in cluster.phases
        for o in [*phase.objects, *tree.root_objects(cluster.name)]
        if str(o.get("apiVersion", "")).startswith("source.toolkit.fluxcd.io/")
    }
    for phase in cluster.phases:
        ref = phase.spec.get("sourceRef")
        if not isinstance(ref, dict) or ref.get("name") == BOOTSTRAP_NAME:
            continue
        key = (
            str(ref.get("kind", "")),
            str(ref.get("name", "")),
            str(ref.get("namespace") or phase.namespace),
        )
        if key not in known:
            findings.error(
                "source-missing",
                f"Kustomization {phase.name}: its source {key[0]} {key[2]}/{key[1]} is defined nowhere in "
                f"cluster {cluster.name}",
                cluster=cluster.name,
                **{**phase.where, "line": line_of(phase.src, "spec", "sourceRef") or phase.line},
            )


def check_built_secrets(tree: Tree, cluster: Cluster, findings: Findings) -> None:
    """No phase applies a plaintext Secret (from a file or a generator)."""
    for phase in cluster.phases:
        for obj in phase.objects:
            src = tree.source_of(obj, cluster.name)
            if secrets_check.plaintext_secret(obj) and not (src and secrets_check.plaintext_secret(src.data)):
                findings.error(
                    "plaintext-secret",
                    f"{label(obj)} is applied in plaintext; make it a SOPS-encrypted *.sops.yaml",
                    **where(tree, cluster, phase, obj),
                )
