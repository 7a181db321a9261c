"""``layout.validate``: every check over a loaded tree, as one list of findings."""

from __future__ import annotations

from pathlib import Path

from fluxops.layout import graph, policy, secrets_check
from fluxops.layout.findings import Findings
from fluxops.layout.flux_sources import is_generator
from fluxops.layout.locate import label, where
from fluxops.layout.model import Cluster, meta
from fluxops.layout.references import check_references
from fluxops.layout.schema_checks import check_schemas
from fluxops.layout.schemas import SchemaChecker
from fluxops.layout.site_checks import check_site_values
from fluxops.layout.tree import Progress, Tree, load, settings_of
from fluxops.settings import LayoutSettings

SCHEMA_CACHE = "schemas.json"
CHART_SOURCE_KINDS = (
    "HelmRepository",
    "GitRepository",
    "Bucket",
    "OCIRepository",
    "HelmChart",
    "ExternalArtifact",
)


def validate(
    root: Path,
    cluster: str | None = None,
    *,
    jobs: int | None = None,
    cache: bool = True,
    key_dir: Path | None = None,
    layout: LayoutSettings | None = None,
    progress: Progress | None = None,
) -> tuple[Tree, Findings]:
    """Load, build and check the repository at ``root`` (or one cluster); the findings say what is wrong
    and where.

    Flux's own rules always apply; ``layout.policy`` adds a conventions policy
    (:mod:`fluxops.layout.policy`). ``layout`` defaults to the ``fluxops.layout`` settings of
    ``root``'s invoke.yaml (see :func:`fluxops.layout.tree.load`); ``progress`` is called as builds
    finish. With ``key_dir`` (the key store) encrypted files whose cluster key is there are decrypted
    to verify their MACs; without it only an environment key (SOPS_AGE_KEY_FILE, ...) is used.
    """
    layout = settings_of(root, layout)
    policy.known(layout.policy)
    tree = load(root, cluster, jobs=jobs, cache=cache, layout=layout, progress=progress)
    findings = tree.findings
    cache_file = tree.repo.cache_dir.parent / SCHEMA_CACHE if cache else None
    checker = SchemaChecker(cache_file, root=tree.repo.root)
    for c in tree.clusters.values():
        check_schemas(tree, c, checker, findings)
        graph.check_graph(c, findings)
        if layout.policy is None:  # a policy decides CRD order itself
            check_crd_order(tree, c, findings)
        check_chart_sources(tree, c, findings)
        secrets_check.check_decryption(c, findings)
        check_built_secrets(tree, c, findings)
        check_references(tree, c, findings)
    checker.save()
    check_site_values(tree, findings)  # the inventory named by invoke.yaml, when there is one
    policy.check(layout.policy, tree, findings)
    secrets_check.check_files(tree.repo.root, tree.sources, findings, tree.scope(), key_dir)
    return tree, findings


def check_crd_order(tree: Tree, cluster: Cluster, findings: Findings) -> None:
    """A custom resource whose CRD a phase it does not depend on installs: a warning (Flux retries
    until the CRD exists, so it converges, a reconciliation later).
    """
    for issue in graph.crd_ordering(cluster, tree.root_objects(cluster.name)):
        if issue.case != "unordered":
            continue  # no CRD in the tree: the schema check says so
        findings.warning(
            "crd-order",
            f"{label(issue.obj)}: {issue.kind} is applied by {issue.phase.name}, but its CRD is installed by "
            f"{' and '.join(issue.installers)}, which {issue.phase.name} does not depend on; Flux retries "
            f"until the CRD exists (add dependsOn {issue.installers[0]} to apply it in one pass)",
            **where(tree, cluster, issue.phase, issue.obj),
        )


def check_chart_sources(tree: Tree, cluster: Cluster, findings: Findings) -> None:
    """Each HelmRelease's chart source exists among the cluster's objects (an ExternalArtifact when
    an ArtifactGenerator of the cluster produces it; a source without a namespace matches any).
    """
    own_kind, own_namespace, own_name = cluster.entry.source
    known = {(own_kind, own_name, own_namespace)}
    objects = [o for p in cluster.phases for o in [p.obj, *p.objects]] + tree.root_objects(cluster.name)
    for obj in objects:
        name, namespace = meta(obj)
        if obj.get("kind") in CHART_SOURCE_KINDS:
            known.add((obj["kind"], name, namespace))
        if is_generator(obj):
            artifacts = (
                (obj.get("spec") or {}).get("artifacts") if isinstance(obj.get("spec"), dict) else None
            )
            for artifact in artifacts if isinstance(artifacts, list) else []:
                if isinstance(artifact, dict):
                    known.add(("ExternalArtifact", str(artifact.get("name", "")), namespace))
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
            if key not in known and (key[0], key[1], "") not in known:
                findings.error(
                    "chart-source",
                    f"{label(obj)}: its chart source {key[0]} {key[2]}/{key[1]} is defined in no phase of "
                    f"cluster {cluster.name}",
                    **where(tree, cluster, phase, obj, *path),
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
