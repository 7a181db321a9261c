"""helm-controller as simulated: a HelmRelease is Ready when its chart source is Ready and its values
resolve (charts are never rendered); each test names the helm-controller behaviour it mirrors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.unit.sim_testing import commit, git_repository, kustomization, manifests, node, ready, settle

REPO_OBJ = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": "charts", "namespace": "flux-system"},
            "spec": {"interval": "1h", "url": "https://charts.example.invalid"}}  # fmt: skip


NS = "flux-system"


def release(name: str = "app", **spec: Any) -> dict[str, Any]:
    body = {"interval": "1h", "chart": {"spec": {"chart": "app", "version": "2.x",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}  # fmt: skip
    body.update(spec)
    return {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": "flux-system"}, "spec": body}  # fmt: skip


def run(tmp_path: Path, *docs: dict[str, Any]) -> Any:
    repo = tmp_path / "repo"
    commit(repo, {"infra/all.yaml": manifests(*docs)})
    sim, clock = node(tmp_path, repo)
    sim.apply([git_repository("1h"), kustomization("infra", "./infra")])
    settle(sim, clock, 30)
    return sim


def test_values_from_a_config_map_key_parse_and_the_release_installs(tmp_path: Path) -> None:
    values = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vals", "namespace": NS},
              "data": {"values.yaml": yaml.safe_dump({"replicas": 2})}}  # fmt: skip
    sim = run(
        tmp_path,
        REPO_OBJ,
        values,
        release(valuesFrom=[{"kind": "ConfigMap", "name": "vals"}], releaseName="web"),
    )
    assert ready(sim, "app", "HelmRelease") == (
        "True",
        "InstallSucceeded",
        "Helm install succeeded for release flux-system/web.v1 with chart app@2.x",
    )
    chart = sim.read().get("source.toolkit.fluxcd.io", "HelmChart", "flux-system", "flux-system-app")
    assert chart["spec"]["chart"] == "app"  # helm-controller's HelmChart <namespace>-<name>


def test_values_that_do_not_parse_or_a_missing_key_are_values_error(tmp_path: Path) -> None:
    values = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vals", "namespace": NS},
              "data": {"values.yaml": "a: [unclosed", "other": "x: 1"}}  # fmt: skip
    bad = release("bad", valuesFrom=[{"kind": "ConfigMap", "name": "vals"}])
    nokey = release("nokey", valuesFrom=[{"kind": "ConfigMap", "name": "vals", "valuesKey": "missing.yaml"}])
    optional = release("optional", valuesFrom=[{"kind": "Secret", "name": "absent", "optional": True}])
    sim = run(tmp_path, REPO_OBJ, values, bad, nokey, optional)
    status, reason, message = ready(sim, "bad", "HelmRelease")
    assert (status, reason) == ("False", "ValuesError")
    assert message.startswith(
        "could not resolve ConfigMap chart values reference 'flux-system/vals' with key 'values.yaml': "
        "failed to read values data"
    )
    assert ready(sim, "nokey", "HelmRelease") == (
        "False",
        "ValuesError",
        "could not resolve ConfigMap chart values reference 'flux-system/vals' with key 'missing.yaml': "
        "key not found",
    )
    assert ready(sim, "optional", "HelmRelease")[0] == "True"


def test_a_missing_helm_repository_leaves_the_chart_and_release_not_ready(tmp_path: Path) -> None:
    sim = run(tmp_path, release())
    assert ready(sim, "flux-system-app", "HelmChart") == (
        "False", "SourceUnavailable",
        'failed to get source: helmrepositories.source.toolkit.fluxcd.io "charts" not found',
    )  # fmt: skip
    status, reason, message = ready(sim, "app", "HelmRelease")
    assert (status, reason) == ("False", "SourceNotReady")
    assert message.startswith("HelmChart 'flux-system/flux-system-app' is not ready: failed to get source")


def test_install_needs_the_target_namespace_unless_create_namespace(tmp_path: Path) -> None:
    sim = run(
        tmp_path,
        REPO_OBJ,
        release("plain", targetNamespace="nowhere"),
        release("creates", targetNamespace="made", install={"createNamespace": True}),
    )
    assert ready(sim, "plain", "HelmRelease") == (
        "False",
        "InstallFailed",
        "Helm install failed for release nowhere/nowhere-plain with chart app@2.x: "
        'create: failed to create: namespaces "nowhere" not found',
    )
    assert ready(sim, "creates", "HelmRelease")[0] == "True"
    assert sim.read().get("", "Namespace", "", "made") is not None  # helm install --create-namespace


def test_depends_on_another_release(tmp_path: Path) -> None:
    first = release("first", targetNamespace="nowhere")
    second = release("second", dependsOn=[{"name": "first"}])
    sim = run(tmp_path, REPO_OBJ, first, second)
    assert ready(sim, "second", "HelmRelease") == (
        "False",
        "DependencyNotReady",
        "dependency 'flux-system/first' is not ready",
    )
