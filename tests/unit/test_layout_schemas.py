"""Schemas that match the cluster, on a small Flux tree built with the real kustomize.

The fixture (tests/schema_fixtures/repo) has one cluster, ``demo``: a crds phase installing a
VolumeSnapshot CRD, a Widget CRD vendored in a chart's crds/ folder, and an apps phase applying a
VolumeSnapshot, a Widget, Flux 2.7 objects (OCIRepository v1, ArtifactGenerator, ExternalArtifact,
an Alert on FluxInstance events) and a Deployment. Each test breaks a copy and expects the finding
at the file and line of the cause.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from fluxops.layout import kube_schemas
from fluxops.layout.findings import Finding, Findings
from fluxops.layout.schema_checks import check_schemas, cluster_crds
from fluxops.layout.schemas import SchemaChecker
from fluxops.layout.tree import load
from fluxops.layout.validate import validate

FIXTURE = Path(__file__).resolve().parents[1] / "schema_fixtures" / "repo"
DATA = Path(__file__).resolve().parents[2] / "fluxops" / "layout" / "schema_data" / "flux"
CODES = ("schema", "api-version", "schema-unknown", "kubernetes-version")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh copy of the fixture repository."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "repo"))


def schema_findings(root: Path, cache: Path | None = None) -> list[Finding]:
    """The schema findings of every cluster of ``root`` (the kubernetes release from its project)."""
    tree = load(root)
    checker = SchemaChecker(cache, root=root)
    findings = Findings()
    for cluster in tree.clusters.values():
        check_schemas(tree, cluster, checker, findings)
    checker.save()
    return findings.items


def project(root: Path, k3s_version: str | None = None, setting: str | None = None) -> None:
    """Give ``root`` an invoke.yaml and an inventory whose demo cluster runs ``k3s_version``."""
    lines = ["fluxops:", "  inventory: inventory.yaml"]
    if setting is not None:
        lines.append(f"  kubernetes_version: {setting}")
    (root / "invoke.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    version = f"\n  vars:\n    k3s_version: {k3s_version}" if k3s_version else ""
    (root / "inventory.yaml").write_text(
        f"all:{version}\n  children:\n    demo:\n      hosts:\n"
        "        d1:\n          ansible_host: 10.0.0.1\n"
        "        d2:\n          ansible_host: 10.0.0.2\n",
        encoding="utf-8",
    )


def edit(root: Path, rel: str, old: str, new: str) -> None:
    """Replace text in a fixture file (the old text must be there)."""
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def append(root: Path, rel: str, text: str) -> None:
    """Add a document to a fixture file."""
    path = root / rel
    path.write_text(path.read_text(encoding="utf-8") + "---\n" + text, encoding="utf-8")


def line_of(root: Path, finding: Finding) -> str:
    """The text of the line a finding points at."""
    assert finding.file and finding.line, finding
    return (root / finding.file).read_text(encoding="utf-8").splitlines()[finding.line - 1]


def only(found: list[Finding], code: str, words: str) -> Finding:
    """The one finding with ``code`` whose message holds ``words``."""
    hits = [f for f in found if f.code == code and words in f.message]
    assert len(hits) == 1, f"{code} {words!r}: " + "\n".join(f"{f.code} {f.where} {f.message}" for f in found)
    return hits[0]


def test_fixture_has_no_schema_findings(repo: Path) -> None:
    project(repo, "v1.34.2+k3s1")
    found = schema_findings(repo)
    assert [f for f in found if f.code in CODES] == [], found


def test_validate_runs_the_schema_check(repo: Path) -> None:
    edit(repo, "k8s/apps/deployment.yaml", "  replicas: 2", "  replicaz: 2")
    _, findings = validate(repo)
    hit = only(findings.errors, "schema", "replicaz")
    assert hit.cluster == "demo" and hit.file == "k8s/apps/deployment.yaml"


def test_typo_in_a_core_kind_is_an_unknown_field(repo: Path) -> None:
    edit(repo, "k8s/apps/deployment.yaml", "  replicas: 2", "  replicaz: 2")
    hit = only(schema_findings(repo), "schema", "replicaz")
    assert hit.severity == "error"
    assert "spec: additional properties 'replicaz' not allowed" in hit.message
    assert "replicaz" in line_of(repo, hit)


def test_typo_in_a_flux_kind_is_an_unknown_field(repo: Path) -> None:
    edit(repo, "k8s/apps/flux.yaml", "  interval: 10m\n  url: oci", "  interval: 10m\n  urll: x\n  url: oci")
    hit = only(schema_findings(repo), "schema", "urll")
    assert "additional properties 'urll' not allowed" in hit.message
    assert "urll" in line_of(repo, hit)


def test_typo_in_a_custom_resource_is_an_unknown_field(repo: Path) -> None:
    edit(repo, "k8s/apps/snapshot.yaml", "  volumeSnapshotClassName:", "  volumeSnapshotClasName:")
    found = schema_findings(repo)
    hit = only(found, "schema", "volumeSnapshotClasName")
    assert "volumeSnapshotClasName" in line_of(repo, hit)
    assert hit.file == "k8s/apps/snapshot.yaml"


def test_wrong_type_in_a_custom_resource_points_at_its_line(repo: Path) -> None:
    edit(repo, "k8s/apps/snapshot.yaml", "persistentVolumeClaimName: data", "persistentVolumeClaimName: 5")
    hit = only(schema_findings(repo), "schema", "persistentVolumeClaimName")
    assert "spec.source.persistentVolumeClaimName: got integer, want string" in hit.message
    assert "persistentVolumeClaimName: 5" in line_of(repo, hit)


def test_cr_against_a_crd_with_another_schema(repo: Path) -> None:
    """The CRD in the tree decides: change its schema and the same CR is wrong."""
    edit(
        repo,
        "k8s/crds/volumesnapshots.yaml",
        "volumeSnapshotClassName:\n                  type: string",
        "volumeSnapshotClassName:\n                  type: integer",
    )
    hit = only(schema_findings(repo), "schema", "volumeSnapshotClassName")
    assert "got string, want integer" in hit.message
    assert "volumeSnapshotClassName: csi-snapclass" in line_of(repo, hit)


def test_version_the_crd_no_longer_serves(repo: Path) -> None:
    edit(repo, "k8s/apps/snapshot.yaml", "snapshot.storage.k8s.io/v1\n", "snapshot.storage.k8s.io/v1beta1\n")
    hit = only(schema_findings(repo), "api-version", "v1beta1")
    assert "is not served for VolumeSnapshot (use snapshot.storage.k8s.io/v1" in hit.message
    assert "k8s/crds/volumesnapshots.yaml" in hit.message
    assert line_of(repo, hit).startswith("apiVersion:")


def test_kind_without_crd_is_a_warning(repo: Path) -> None:
    append(
        repo,
        "k8s/apps/snapshot.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        "metadata:\n  name: web\n  namespace: default\nspec:\n  parentRefs:\n    - name: edge\n",
    )
    found = schema_findings(repo)
    hit = only(found, "schema-unknown", "HTTPRoute")
    assert hit.severity == "warning"
    assert "schema unknown; CRD not in this repository" in hit.message
    assert line_of(repo, hit) == "kind: HTTPRoute"
    assert not [f for f in found if f.severity == "error" and f.code in CODES]


def test_snapshot_without_its_crd_is_a_warning(repo: Path) -> None:
    (repo / "k8s/crds/volumesnapshots.yaml").write_text("", encoding="utf-8")
    hit = only(schema_findings(repo), "schema-unknown", "VolumeSnapshot")
    assert hit.file == "k8s/apps/snapshot.yaml" and hit.severity == "warning"


def test_cr_checked_against_the_crd_of_a_vendored_chart(repo: Path) -> None:
    edit(repo, "k8s/apps/widget.yaml", "size: small", "size: medium")
    edit(repo, "k8s/apps/widget.yaml", "    tier: front", "    tier: 3")
    found = schema_findings(repo)
    size = only(found, "schema", "spec.size")
    assert "value must be one of 'small', 'large'" in size.message
    assert "size: medium" in line_of(repo, size)
    tier = only(found, "schema", "spec.labels.tier")
    assert "got integer, want string" in tier.message


def test_vendored_chart_crd_needs_its_chart(repo: Path) -> None:
    """A crds/ folder outside a chart (no Chart.yaml next to it) defines nothing."""
    (repo / "k8s/charts/widget-operator/Chart.yaml").unlink()
    hit = only(schema_findings(repo), "schema-unknown", "Widget")
    assert hit.file == "k8s/apps/widget.yaml"


def test_structural_schema_extensions(repo: Path) -> None:
    """int-or-string, nullable, preserve-unknown-fields, embedded resources: as the API server has them."""
    edit(repo, "k8s/apps/widget.yaml", "port: http", "port: 8080")
    edit(repo, "k8s/apps/widget.yaml", "replicas: null", "replicas: 0")
    edit(
        repo,
        "k8s/apps/widget.yaml",
        "    metadata:\n      name: front\n    spec:",
        "    metadata:\n      name: front\n    extra: 1\n    spec:",
    )
    found = [f for f in schema_findings(repo) if f.code in CODES]
    messages = sorted(f.message for f in found)
    assert len(found) == 2, messages
    assert any("spec.replicas" in m and "minimum" in m for m in messages)
    assert any("spec.template: additional properties 'extra' not allowed" in m for m in messages)


def test_flux_27_kinds_and_fields_are_accepted(repo: Path) -> None:
    """Each Flux object is checked against a schema (not skipped) and passes."""
    tree = load(repo)
    cluster = tree.clusters["demo"]
    checker = SchemaChecker(root=repo)
    catalog = checker.catalog("demo", cluster_crds(tree, cluster))
    flux = [o for p in cluster.phases for o in [p.obj, *p.objects] if "fluxcd.io/" in o["apiVersion"]]
    kinds = {o["kind"] for o in flux}
    assert {"OCIRepository", "ArtifactGenerator", "ExternalArtifact", "Alert", "Kustomization"} <= kinds
    assert any(o.get("spec", {}).get("deletionPolicy") == "WaitForTermination" for o in flux)
    for obj in flux:
        assert checker.check(obj, catalog) == [], obj


def test_flux_enum_still_refuses_unknown_values(repo: Path) -> None:
    edit(repo, "k8s/clusters/demo/apps.yaml", "WaitForTermination", "WaitForever")
    hit = only(schema_findings(repo), "schema", "deletionPolicy")
    assert "'WaitForTermination'" in hit.message and hit.phase == "apps"
    assert "WaitForever" in line_of(repo, hit)


def test_deprecated_flux_version_is_a_warning(repo: Path) -> None:
    edit(
        repo,
        "k8s/apps/flux.yaml",
        "source.toolkit.fluxcd.io/v1\nkind: OCIRepository",
        "source.toolkit.fluxcd.io/v1beta2\nkind: OCIRepository",
    )
    hit = only(schema_findings(repo), "api-version", "OCIRepository")
    assert hit.severity == "warning" and "use source.toolkit.fluxcd.io/v1" in hit.message


def test_api_served_from_a_later_release(repo: Path) -> None:
    """resource.k8s.io/v1 is served from Kubernetes 1.34: fine there, an error on 1.33."""
    append(
        repo,
        "k8s/apps/deployment.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata:\n"
        "  name: gpu\nspec:\n  selectors:\n    - cel:\n"
        "        expression: device.driver == 'gpu.example.com'\n",
    )
    project(repo, "v1.34.2+k3s1")
    assert [f for f in schema_findings(repo) if f.code in CODES] == []
    project(repo, "v1.33.5+k3s1")
    hit = only(schema_findings(repo), "api-version", "DeviceClass")
    assert "not served for DeviceClass by Kubernetes 1.33 (served from Kubernetes 1.34" in hit.message
    assert hit.severity == "error" and line_of(repo, hit) == "apiVersion: resource.k8s.io/v1"


def test_mutating_admission_policy_by_release(repo: Path) -> None:
    append(
        repo,
        "k8s/apps/deployment.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\n"
        "kind: MutatingAdmissionPolicy\nmetadata:\n  name: add-label\nspec:\n  failurePolicy: Fail\n",
    )
    project(repo, "v1.36.0+k3s1")
    assert [f for f in schema_findings(repo) if f.code in CODES] == []
    project(repo, "v1.34.2+k3s1")
    hit = only(schema_findings(repo), "api-version", "MutatingAdmissionPolicy")
    assert (
        "served from Kubernetes 1.36" in hit.message and "admissionregistration.k8s.io/v1beta1" in hit.message
    )


def test_setting_overrides_the_inventory(repo: Path) -> None:
    append(
        repo,
        "k8s/apps/deployment.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata:\n  name: gpu\n",
    )
    project(repo, "v1.34.2+k3s1", setting="'1.33'")
    hit = only(schema_findings(repo), "api-version", "DeviceClass")
    assert "Kubernetes 1.33" in hit.message


def test_unquoted_setting_is_refused_with_advice(repo: Path) -> None:
    project(repo, "v1.34.2+k3s1", setting="1.30")
    hit = only(schema_findings(repo), "kubernetes-version", "quoted")
    assert hit.severity == "warning" and "1.3" in hit.message


def test_removed_core_version_is_an_error(repo: Path) -> None:
    edit(repo, "k8s/apps/deployment.yaml", "apiVersion: apps/v1\n", "apiVersion: apps/v1beta1\n")
    hit = only(schema_findings(repo), "api-version", "apps/v1beta1")
    assert "use apps/v1" in hit.message and hit.severity == "error"


def test_release_newer_than_the_data_is_said_once(repo: Path) -> None:
    newest = kube_schemas.releases()[-1]
    major, minor = kube_schemas.release_key(newest)
    project(repo, f"v{major}.{minor + 1}.0+k3s1")
    found = schema_findings(repo)
    hit = only(found, "kubernetes-version", f"{major}.{minor + 1}")
    assert f"checked against {newest}" in hit.message and hit.file == "inventory.yaml"
    assert [f for f in found if f.code in CODES and f is not hit] == []


def test_cached_results_follow_the_crd(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "schemas.json"
    assert [f for f in schema_findings(repo, cache) if f.code in CODES] == []
    assert cache.is_file()
    edit(
        repo,
        "k8s/crds/volumesnapshots.yaml",
        "volumeSnapshotClassName:\n                  type: string",
        "volumeSnapshotClassName:\n                  type: boolean",
    )
    hit = only(schema_findings(repo, cache), "schema", "volumeSnapshotClassName")
    assert "want boolean" in hit.message


def test_environment_overrides_the_project(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    append(
        repo,
        "k8s/apps/deployment.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata:\n  name: gpu\nspec: {}\n",
    )
    project(repo, "v1.33.5+k3s1")
    monkeypatch.setenv("INVOKE_FLUXOPS_KUBERNETES_VERSION", "1.34")
    assert [f for f in schema_findings(repo) if f.code in CODES] == []


def test_flux_crds_in_the_tree_win_over_the_shipped_ones(repo: Path) -> None:
    """A repository holding Flux's CRDs (gotk-components.yaml) is checked against those."""
    data = json.loads((DATA / "kustomize.toolkit.fluxcd.io" / "kustomization.json").read_text())
    for version in data["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        spec.pop("deletionPolicy", None)  # as an older Flux had it
    (repo / "k8s/crds/flux-kustomizations.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    edit(
        repo,
        "k8s/crds/kustomization.yaml",
        "  - volumesnapshots.yaml",
        "  - volumesnapshots.yaml\n  - flux-kustomizations.yaml",
    )
    hit = only(schema_findings(repo), "schema", "deletionPolicy")
    assert "additional properties 'deletionPolicy' not allowed" in hit.message
    assert "deletionPolicy" in line_of(repo, hit) and hit.file == "k8s/clusters/demo/apps.yaml"
