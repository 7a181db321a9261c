"""The simulated API server: each test names the Kubernetes API behaviour it mirrors."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxops.sim.clock import VirtualClock
from fluxops.sim.cluster import SimCluster
from fluxops.sim.validation import ApiError

REPO = Path(__file__).resolve().parents[2]
POOL = {
    "apiVersion": "metallb.io/v1beta1",
    "kind": "IPAddressPool",
    "metadata": {"name": "lan", "namespace": "metallb-system"},
}


@pytest.fixture
def sim(tmp_path: Path) -> SimCluster:
    return SimCluster.create(tmp_path / "node", clock=VirtualClock(start=1e9), name="n1")


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def metallb_crds() -> list[dict[str, Any]]:
    """The CRDs this repository ships for MetalLB (the oracle for schema checks of its pools)."""
    return list(yaml.safe_load_all((REPO / "k8s/base/crds/metallb-crds.yaml").read_text()))


def refused(sim: SimCluster, obj: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        sim.apply([obj])
    return caught.value


def test_restmapper_no_matches_for_a_kind_before_its_crd(sim: SimCluster) -> None:
    sim.apply([namespace("metallb-system")])
    error = refused(sim, {**POOL, "spec": {"addresses": ["10.0.0.0/24"]}})
    assert error.message == 'no matches for kind "IPAddressPool" in version "metallb.io/v1beta1"'
    assert error.reason == ""  # a client-side error, not a Status: Flux prints "dry-run failed: ..."


def test_restmapper_no_matches_for_a_version_the_release_does_not_serve(sim: SimCluster) -> None:
    deployment = {"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "web"}}
    assert refused(sim, deployment).message == 'no matches for kind "Deployment" in version "apps/v1beta1"'


def test_namespaced_object_in_a_missing_namespace_is_not_found(sim: SimCluster) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "apps"}}
    error = refused(sim, config)
    assert (error.message, error.reason, error.code) == ('namespaces "apps" not found', "NotFound", 404)


def test_custom_resource_validated_against_its_crd_openapiv3schema(sim: SimCluster) -> None:
    sim.apply([namespace("metallb-system"), *metallb_crds()])
    stored = sim.apply([{**POOL, "spec": {"addresses": ["10.0.0.0/24"]}}])[0][1]
    assert stored["metadata"]["generation"] == 1
    missing = refused(sim, {**POOL, "spec": {"autoAssign": False}})
    assert missing.message == 'IPAddressPool.metallb.io "lan" is invalid: spec.addresses: Required value'
    assert missing.reason == "Invalid"
    typed = refused(sim, {**POOL, "spec": {"addresses": ["10.0.0.0/24"], "autoAssign": "yes"}})
    assert typed.message == (
        'IPAddressPool.metallb.io "lan" is invalid: spec.autoAssign: Invalid value: "string": '
        'spec.autoAssign in body must be of type boolean: "string"'
    )


def test_server_side_apply_refuses_a_field_the_schema_does_not_declare(sim: SimCluster) -> None:
    sim.apply([namespace("metallb-system"), *metallb_crds()])
    error = refused(sim, {**POOL, "spec": {"addresses": ["10.0.0.0/24"], "autoassign": True}})
    assert error.reason == "BadRequest"
    assert error.message == (
        "failed to create typed patch object (metallb-system/lan; metallb.io/v1beta1, Kind=IPAddressPool): "
        ".spec.autoassign: field not declared in schema"
    )


def test_core_kinds_validated_against_the_release_schema(sim: SimCluster) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"ports": [{"port": "http"}]}}  # fmt: skip
    error = refused(sim, service)
    assert error.message.startswith('Service "web" is invalid: spec.ports[0].port: Invalid value: "string"')


def test_metadata_name_must_be_an_rfc1123_subdomain(sim: SimCluster) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "-db", "namespace": "default"}}
    error = refused(sim, config)
    assert error.message.startswith(
        'ConfigMap "-db" is invalid: metadata.name: Invalid value: "-db": a lowercase RFC 1123'
    )


def test_secret_string_data_is_merged_into_base64_data(sim: SimCluster) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
              "data": {"a": base64.b64encode(b"1").decode()}, "stringData": {"b": "2"}}  # fmt: skip
    stored = sim.apply([secret])[0][1]
    assert "stringData" not in stored
    assert {k: base64.b64decode(v).decode() for k, v in stored["data"].items()} == {"a": "1", "b": "2"}
    bad = {**secret, "data": {"a": "not base64!"}, "stringData": {}}
    assert refused(sim, bad).reason == "BadRequest"


def test_server_side_apply_keeps_what_another_field_manager_set(sim: SimCluster) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default",
              "labels": {"team": "a", "tier": "web"}}, "data": {"k": "v"}}  # fmt: skip
    sim.apply([config], "kustomize-controller")
    with sim.store.transaction() as state:
        stored = state.get("", "ConfigMap", "default", "c")
        sim.api(state).patch_metadata(stored, "kubectl", annotations={"reconcile.fluxcd.io/requestedAt": "1"})
    config["metadata"]["labels"] = {"team": "a"}
    action, stored = sim.apply([config], "kustomize-controller")[0]
    assert action == "configured"
    assert stored["metadata"]["labels"] == {"team": "a"}  # the manager's own label it dropped is gone
    assert stored["metadata"]["annotations"] == {"reconcile.fluxcd.io/requestedAt": "1"}  # kubectl's stays
    assert sim.apply([config], "kustomize-controller")[0][0] == "unchanged"


def test_generation_changes_with_the_spec_only(sim: SimCluster) -> None:
    sim.apply([namespace("metallb-system"), *metallb_crds()])
    pool = {**POOL, "spec": {"addresses": ["10.0.0.0/24"]}}
    sim.apply([pool])
    labelled = {**pool, "metadata": {**pool["metadata"], "labels": {"a": "b"}}}
    assert sim.apply([labelled])[0][1]["metadata"]["generation"] == 1
    changed = {**labelled, "spec": {"addresses": ["10.0.1.0/24"]}}
    assert sim.apply([changed])[0][1]["metadata"]["generation"] == 2


def test_deleting_a_namespace_deletes_what_it_holds_and_a_crd_its_resources(sim: SimCluster) -> None:
    sim.apply([namespace("metallb-system"), *metallb_crds()])
    sim.apply([{**POOL, "spec": {"addresses": ["10.0.0.0/24"]}}])
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "metallb-system"},
    }
    sim.apply([config])
    with sim.store.transaction() as state:
        api = sim.api(state)
        crd = state.get("apiextensions.k8s.io", "CustomResourceDefinition", "", "ipaddresspools.metallb.io")
        api.delete(crd)
        assert state.list("metallb.io", "IPAddressPool") == []
        api.delete(state.get("", "Namespace", "", "metallb-system"))
        assert state.get("", "ConfigMap", "metallb-system", "c") is None
        assert state.get("", "Namespace", "", "metallb-system") is None


def test_the_state_document_is_private_to_its_owner(sim: SimCluster) -> None:
    assert sim.store.path.stat().st_mode & 0o777 == 0o600
    assert sim.folder.stat().st_mode & 0o777 == 0o700
