"""kustomize-controller as simulated: each test names the Flux behaviour it mirrors (reasons and messages
as kustomize-controller v1.7 and fluxcd/pkg/ssa write them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fluxops.layout.kustomize import kubectl
from tests.unit.sim_testing import (
    commit,
    git,
    git_repository,
    kustomization,
    manifests,
    node,
    of,
    ready,
    settle,
)


def config_map(name: str, namespace: str = "apps", **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    commit(folder, {"apps/all.yaml": manifests(NAMESPACE, config_map("a"), config_map("b"))})
    return folder


def test_applied_revision_is_branch_at_sha1_commit(tmp_path: Path, repo: Path) -> None:
    sim, clock = node(tmp_path, repo)
    sim.apply([git_repository(), kustomization("apps", "./apps")])
    settle(sim, clock, 5)
    revision = f"main@sha1:{git(repo, 'rev-parse', 'HEAD')}"
    assert ready(sim, "apps") == ("True", "ReconciliationSucceeded", f"Applied revision: {revision}")
    status = sim.read().get("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", "apps")["status"]
    assert status["lastAppliedRevision"] == status["lastAttemptedRevision"] == revision
    assert ready(sim, "flux-system", "GitRepository") == (
        "True",
        "Succeeded",
        f"stored artifact for revision '{revision}'",
    )
    entries = [e["id"] for e in status["inventory"]["entries"]]
    assert entries == ["_apps__Namespace", "apps_a__ConfigMap", "apps_b__ConfigMap"]
    stored = sim.read().get("", "ConfigMap", "apps", "a")
    assert stored["metadata"]["labels"] == {
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }


def test_depends_on_not_ready_is_dependency_not_ready_retried_every_30s(tmp_path: Path, repo: Path) -> None:
    sim, clock = node(tmp_path, repo)
    first = kustomization("first", "./missing")
    second = kustomization("second", "./apps", dependsOn=[{"name": "first"}])
    sim.apply([git_repository(), first, second])
    events = settle(sim, clock, 95)
    assert ready(sim, "second") == (
        "False",
        "DependencyNotReady",
        "dependency 'flux-system/first' is not ready",
    )
    waits = sorted(
        {round(e.time) for e in of(events, "second", "waiting") if e.reason == "DependencyNotReady"}
    )
    assert waits[-3:] == [30, 60, 90]  # kustomize-controller --requeue-dependency=30s
    status, reason, message = ready(sim, "first")
    assert (status, reason) == ("False", "ArtifactFailed")
    assert message.startswith("kustomization path not found: stat ") and message.endswith(
        "no such file or directory"
    )


def test_broken_overlay_is_build_failed_with_kustomizes_message(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit(repo, {"apps/kustomization.yaml": "resources:\n  - missing.yaml\n"})
    oracle = subprocess.run([kubectl(), "kustomize", str(repo / "apps")], capture_output=True, text=True)
    assert oracle.returncode != 0 and "missing.yaml" in oracle.stderr
    sim, clock = node(tmp_path, repo)
    sim.apply([git_repository(), kustomization("apps", "./apps")])
    settle(sim, clock, 5)
    status, reason, message = ready(sim, "apps")
    assert (status, reason) == ("False", "BuildFailed")
    assert message.startswith("kustomize build failed: ") and "missing.yaml" in message


def test_dry_run_failure_names_the_object_as_fluxs_ssa_does(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit(repo, {"apps/c.yaml": manifests(config_map("c", "nowhere"))})
    sim, clock = node(tmp_path, repo)
    sim.apply([git_repository(), kustomization("apps", "./apps", retryInterval="2m")])
    events = settle(sim, clock, 250)
    expected = 'ConfigMap/nowhere/c not found: namespaces "nowhere" not found'
    assert ready(sim, "apps") == ("False", "ReconciliationFailed", expected)
    starts = [round(e.time) for e in of(events, "apps", "started")]
    assert starts == [0, 120, 240]  # retryInterval, not interval


def test_prune_deletes_what_the_new_revision_lacks_and_prune_false_keeps_it(
    tmp_path: Path, repo: Path
) -> None:
    kept_ns = {**NAMESPACE, "metadata": {"name": "kept"}}
    commit(repo, {"kept/c.yaml": manifests(kept_ns, config_map("k1", "kept"), config_map("k2", "kept"))})
    sim, clock = node(tmp_path, repo)
    sim.apply(
        [git_repository(), kustomization("apps", "./apps"), kustomization("kept", "./kept", prune=False)]
    )
    settle(sim, clock, 5)
    assert sim.read().get("", "ConfigMap", "kept", "k2") is not None
    commit(
        repo,
        {"apps/all.yaml": manifests(NAMESPACE), "kept/c.yaml": manifests(kept_ns, config_map("k1", "kept"))},
    )
    events = settle(
        sim, clock, 65
    )  # the GitRepository's interval finds the new revision; its Kustomizations follow
    assert {e.name for e in events if e.what == "ready" and round(e.time) == 55} >= {
        "flux-system",
        "apps",
        "kept",
    }
    state = sim.read()
    assert state.get("", "ConfigMap", "apps", "a") is None and state.get("", "ConfigMap", "apps", "b") is None
    assert state.get("", "ConfigMap", "kept", "k2") is not None  # prune: false


def test_prune_disabled_annotation_keeps_the_object(tmp_path: Path, repo: Path) -> None:
    sim, clock = node(tmp_path, repo)
    keep_me = config_map("b")
    keep_me["metadata"]["annotations"] = {"kustomize.toolkit.fluxcd.io/prune": "disabled"}
    commit(repo, {"apps/all.yaml": manifests(NAMESPACE, config_map("a"), keep_me)})
    sim.apply([git_repository(), kustomization("apps", "./apps")])
    settle(sim, clock, 5)
    commit(repo, {"apps/all.yaml": manifests(NAMESPACE)})
    settle(sim, clock, 65)
    state = sim.read()
    assert state.get("", "ConfigMap", "apps", "a") is None
    assert state.get("", "ConfigMap", "apps", "b") is not None


def test_requested_at_annotation_is_answered_in_last_handled_reconcile_at(tmp_path: Path, repo: Path) -> None:
    sim, clock = node(tmp_path, repo)
    sim.apply([git_repository("1h"), kustomization("apps", "./apps", interval="1h")])
    settle(sim, clock, 5)
    with sim.store.transaction() as state:
        ks = state.get("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", "apps")
        sim.api(state).patch_metadata(
            ks, "kubectl", annotations={"reconcile.fluxcd.io/requestedAt": "1718000000"}
        )
    events = settle(sim, clock, 5)
    assert [round(e.time) for e in of(events, "apps", "started")] == [0]  # at once, not after the 1h interval
    ks = sim.read().get("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", "apps")
    assert ks["status"]["lastHandledReconcileAt"] == "1718000000"


HELM_REPO = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
             "metadata": {"name": "charts", "namespace": "flux-system"},
             "spec": {"interval": "1h", "url": "https://charts.example.invalid"}}  # fmt: skip


def release(**spec: object) -> dict:
    body = {"interval": "1h", "chart": {"spec": {"chart": "app", "version": "1.x",
            "sourceRef": {"kind": "HelmRepository", "name": "charts"}}},
            "targetNamespace": "apps"}  # fmt: skip
    body.update(spec)
    return {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "flux-system"}, "spec": body}  # fmt: skip


def test_wait_is_ready_once_applied_helmreleases_are_ready(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit(repo, {"infra/all.yaml": manifests(NAMESPACE, HELM_REPO, release())})
    sim, clock = node(tmp_path, repo)
    sim.apply([git_repository(), kustomization("infra", "./infra", wait=True, timeout="2m")])
    events = settle(sim, clock, 30)
    assert ready(sim, "infra")[0] == "True"
    applied = of(events, "infra", "applied")[0]
    assert "HelmRelease/flux-system/app" in applied.message
    assert round(of(events, "infra", "ready")[0].time) == 5  # the health check polls every 5 s
    assert ready(sim, "app", "HelmRelease") == (
        "True",
        "InstallSucceeded",
        "Helm install succeeded for release apps/apps-app.v1 with chart app@1.x",
    )  # helm-controller names a release <targetNamespace>-<name> unless releaseName is set


def test_wait_fails_health_check_after_timeout_and_retries(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    broken = release(valuesFrom=[{"kind": "ConfigMap", "name": "app-values"}])
    commit(repo, {"infra/all.yaml": manifests(NAMESPACE, HELM_REPO, broken)})
    sim, clock = node(tmp_path, repo)
    sim.apply(
        [git_repository("1h"), kustomization("infra", "./infra", wait=True, timeout="2m", retryInterval="1m")]
    )
    events = settle(sim, clock, 200)
    expected = "health check failed after 2m0s: timeout waiting for: "
    expected += "[HelmRelease/flux-system/app status: 'InProgress']"
    failed = of(events, "infra", "failed")[0]
    assert (round(failed.time), failed.reason, failed.message) == (120, "HealthCheckFailed", expected)
    assert [round(e.time) for e in of(events, "infra", "started")] == [0, 180]  # timeout, then retryInterval
    assert ready(sim, "infra") == ("Unknown", "Progressing", "Reconciliation in progress")  # checking again
    values = (
        "could not resolve ConfigMap chart values reference 'flux-system/app-values' with key 'values.yaml'"
    )
    assert ready(sim, "app", "HelmRelease") == (
        "False",
        "ValuesError",
        f'{values}: configmaps "app-values" not found',
    )


def test_encrypted_secret_without_decryption_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "apps"},
              "stringData": {"k": "ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]"},
              "sops": {"mac": "ENC[AES256_GCM,data:m,iv:n,tag:o,type:str]", "version": "3.11.0"}}  # fmt: skip
    commit(repo, {"apps/all.yaml": manifests(NAMESPACE, secret)})
    sim, clock = node(tmp_path, repo)
    sim.apply([git_repository(), kustomization("apps", "./apps")])
    settle(sim, clock, 5)
    message = (
        "Secret/apps/s is SOPS encrypted, configuring decryption is required for this secret to be reconciled"
    )
    assert ready(sim, "apps") == ("False", "ReconciliationFailed", message)


def test_post_build_substitutes_variables_and_names_a_missing_substitute_from(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit(repo, {"apps/all.yaml": manifests(NAMESPACE, config_map("c", domain="${DOMAIN}"))})
    sim, clock = node(tmp_path, repo)
    good = kustomization("apps", "./apps", postBuild={"substitute": {"DOMAIN": "lab.example"}})
    sim.apply([git_repository(), good])
    settle(sim, clock, 5)
    assert sim.read().get("", "ConfigMap", "apps", "c")["data"] == {"domain": "lab.example"}
    missing = kustomization(
        "other", "./apps", postBuild={"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]}
    )
    sim.apply([missing])
    settle(sim, clock, 5)
    expected = (
        "post build failed for 'Namespace.v1.[noGrp]/apps': substitute from 'ConfigMap/vars' error: "
        'configmaps "vars" not found'
    )
    assert ready(sim, "other") == ("False", "BuildFailed", expected)


def test_crd_race_a_custom_resource_fails_first_and_succeeds_on_retry(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": True}}}]}}  # fmt: skip
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "apps"},
    }
    commit(repo, {"crds/crd.yaml": manifests(crd), "apps/all.yaml": manifests(NAMESPACE, widget)})
    sim, clock = node(tmp_path, repo)
    sim.apply(
        [
            git_repository(),
            kustomization("crds", "./crds"),
            kustomization("apps", "./apps", retryInterval="1m"),
        ]
    )
    events = settle(sim, clock, 70)
    first = of(events, "apps", "failed")[0]
    assert first.message.startswith(
        'Widget/apps/w dry-run failed: no matches for kind "Widget" in version "example.com/v1"'
    )
    assert round(of(events, "apps", "ready")[0].time) == 60
    assert ready(sim, "apps")[0] == "True"


def test_missing_source_is_artifact_failed(tmp_path: Path, repo: Path) -> None:
    sim, clock = node(tmp_path, repo)
    ks = kustomization("apps", "./apps")
    ks["spec"]["sourceRef"]["name"] = "nope"
    sim.apply([ks])
    settle(sim, clock, 5)
    expected = 'gitrepositories.source.toolkit.fluxcd.io "nope" not found'
    assert ready(sim, "apps") == ("False", "ArtifactFailed", expected)


def test_deleting_a_kustomization_with_prune_deletes_its_objects(tmp_path: Path, repo: Path) -> None:
    sim, clock = node(tmp_path, repo)
    sim.apply([git_repository(), kustomization("apps", "./apps")])
    settle(sim, clock, 5)
    with sim.store.transaction() as state:
        ks = state.get("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", "apps")
        assert ks["metadata"]["finalizers"] == ["finalizers.fluxcd.io"]
        sim.api(state).delete(ks)
    settle(sim, clock, 5)
    state = sim.read()
    assert state.get("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", "apps") is None
    assert state.get("", "ConfigMap", "apps", "a") is None and state.get("", "Namespace", "", "apps") is None
