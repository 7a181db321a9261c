"""The schema pieces on their own: releases from the inventory, CRD schemas, error wording, the data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from fluxops import inventory
from fluxops.layout import flux_schemas, kube_schemas
from fluxops.layout.crd_schema import parse_crd, to_json_schema
from fluxops.layout.kube_versions import ClusterVersion, kubernetes_version, parse_version
from fluxops.layout.schemas import Catalog, SchemaChecker, is_builtin_group, needs_crd

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "fluxops" / "layout" / "schema_data" / "flux"


def checker_for(release: str) -> tuple[SchemaChecker, Catalog]:
    """A checker whose clusters run ``release``, and its catalog."""
    checker = SchemaChecker(versions=lambda _: ClusterVersion(release, "test"))
    return checker, checker.catalog("demo")


@pytest.mark.parametrize(
    ("text", "release"),
    [
        ("v1.33.4+k3s1", "1.33"),
        ("v1.34.0-rc1+k3s1", "1.34"),
        ("1.35.2", "1.35"),
        ("1.30", "1.30"),
        (" v1.29 ", "1.29"),
        ("latest", None),
        ("{{ k3s_release }}", None),
        ("", None),
    ],
)
def test_parse_version(text: str, release: str | None) -> None:
    assert parse_version(text) == release


def write_inventory(tmp_path: Path, body: str) -> inventory.Inventory:
    path = tmp_path / "hosts.yaml"
    path.write_text(body, encoding="utf-8")
    return inventory.load(path, root=tmp_path)


def test_release_from_the_servers_oldest_first(tmp_path: Path) -> None:
    inv = write_inventory(
        tmp_path,
        "all:\n  children:\n    edge:\n      hosts:\n"
        "        a: {ansible_host: 10.0.0.1, k3s_version: v1.34.1+k3s1}\n"
        "        b: {ansible_host: 10.0.0.2, k3s_version: v1.33.5+k3s1, k3s_role: server}\n"
        "        c: {ansible_host: 10.0.0.3, k3s_version: v1.30.0+k3s1, k3s_role: agent}\n",
    )
    found = kubernetes_version(None, inv, "edge")
    assert found.release == "1.33" and "of b" in found.origin and found.file.endswith("hosts.yaml")
    assert kubernetes_version(None, inv, "other") == ClusterVersion()
    assert kubernetes_version("1.36", inv, "edge").release == "1.36"
    assert "quoted" in kubernetes_version(1.3, inv, "edge").problem
    assert "quoted" in kubernetes_version("1.3", inv, "edge").problem


def test_bad_k3s_version_is_a_problem(tmp_path: Path) -> None:
    inv = write_inventory(
        tmp_path,
        "all:\n  children:\n    edge:\n      hosts:\n"
        "        a: {ansible_host: 10.0.0.1, k3s_version: stable}\n",
    )
    found = kubernetes_version(None, inv, "edge")
    assert found.release is None and "'stable' of host a is not a version" in found.problem


def test_no_inventory_means_the_newest_release(tmp_path: Path) -> None:
    checker = SchemaChecker(root=tmp_path)
    catalog = checker.catalog("demo")
    assert catalog.release == kube_schemas.releases()[-1] and catalog.note == ""


def test_releases_around_the_data() -> None:
    known = kube_schemas.releases()
    assert {"1.30", "1.33", "1.34", "1.36"} <= set(known)
    assert kube_schemas.choose("1.33") == ("1.33", None)
    newest, note = kube_schemas.choose("9.99")
    assert newest == known[-1] and note and "9.99" in note
    oldest, note = kube_schemas.choose("1.2")
    assert oldest == known[0] and note


def test_groups_by_release() -> None:
    assert is_builtin_group("networking.k8s.io") and is_builtin_group("") and is_builtin_group("apps")
    assert not is_builtin_group("gateway.networking.k8s.io")
    assert not is_builtin_group("snapshot.storage.k8s.io")
    assert is_builtin_group("helm.cattle.io")
    assert is_builtin_group("resource.k8s.io", "1.34") and not is_builtin_group("resource.k8s.io", "1.25")
    assert not needs_crd("source.extensions.fluxcd.io") and not needs_crd("apps")
    assert needs_crd("traefik.io") and needs_crd("gateway.networking.k8s.io")


CORE_CASES: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": 1}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "dat": {}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": "80"}]}},
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": "http"}]},
    },
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {}}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}, "spec": {}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i", "labels": {"a": 1}}},
    {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "g"}, "spec": {}},
]


@pytest.mark.parametrize("release", ["1.30", "1.34"])
@pytest.mark.parametrize("obj", CORE_CASES, ids=[f"{c['kind']}{i}" for i, c in enumerate(CORE_CASES)])
def test_core_verdicts_match_kubernetes_validate(release: str, obj: dict[str, Any]) -> None:
    """kubernetes-validate (strict) is the oracle for Kubernetes' own kinds."""
    checker, catalog = checker_for(release)
    problems = checker.check(obj, catalog)
    try:
        kubernetes_validate.validate(obj, release, strict=True)
        expected_valid = True
    except kubernetes_validate.ValidationError:
        expected_valid = False
    except kubernetes_validate.SchemaNotFoundError:
        assert problems and problems[0].path == ("apiVersion",)
        return
    errors = [p for p in problems or [] if p.severity == "error"]
    assert (errors == []) == expected_valid, problems


def test_error_wording() -> None:
    checker, catalog = checker_for("1.33")
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": "2", "selector": {}, "template": {"spec": {"containers": [{"image": "x"}]}}},
    }
    messages = [p.message for p in checker.check(obj, catalog) or []]
    assert "spec.replicas: got string, want integer" in messages
    assert "spec.template.spec.containers.0: missing property 'name'" in messages
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "Cluster"}}
    assert checker.check(service, catalog) == []  # no enum for Service.spec.type in the OpenAPI
    port = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 1, "targetPort": 1.5}]},
    }
    assert [p.message for p in checker.check(port, catalog) or []] == [
        "spec.ports.0.targetPort: got number, want string or integer"
    ]


def test_flux_kind_errors() -> None:
    checker, catalog = checker_for("1.33")
    unknown = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepo", "metadata": {"name": "x"}}
    [problem] = checker.check(unknown, catalog) or []
    assert (
        "GitRepo is not a kind of source.toolkit.fluxcd.io" in problem.message
        and "GitRepository" in problem.message
    )
    gone = {"apiVersion": "helm.toolkit.fluxcd.io/v2beta1", "kind": "HelmRelease", "metadata": {"name": "x"}}
    [problem] = checker.check(gone, catalog) or []
    assert problem.path == ("apiVersion",) and "use helm.toolkit.fluxcd.io/v2" in problem.message


def test_every_served_alert_version_takes_flux_operator_kinds() -> None:
    checker, catalog = checker_for("1.33")
    for version in ("v1beta2", "v1beta3"):
        alert = {
            "apiVersion": f"notification.toolkit.fluxcd.io/{version}",
            "kind": "Alert",
            "metadata": {"name": "a"},
            "spec": {
                "providerRef": {"name": "p"},
                "eventSources": [{"kind": "FluxInstance", "name": "flux"}],
            },
        }
        assert [p for p in checker.check(alert, catalog) or [] if p.severity == "error"] == []


def test_k3s_kinds_are_served() -> None:
    checker, catalog = checker_for("1.33")
    chart = {"apiVersion": "helm.cattle.io/v1", "kind": "HelmChartConfig", "metadata": {"name": "traefik"}}
    assert checker.check(chart, catalog) == []
    other = {"apiVersion": "helm.cattle.io/v1", "kind": "Other", "metadata": {"name": "x"}}
    assert checker.check(other, catalog) is None


def test_junctor_branches_add_no_strictness() -> None:
    schema = to_json_schema(
        {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"], "properties": {"a": {}}}, {"required": ["b"]}],
        },
        root=True,
    )
    assert schema["additionalProperties"] is False
    assert "additionalProperties" not in schema["oneOf"][0]
    assert set(schema["properties"]) == {"a", "b", "apiVersion", "kind", "metadata"}


def test_crd_without_root_schema_keeps_everything() -> None:
    crd = parse_crd(
        {"spec": {"group": "x.io", "names": {"kind": "Thing"}, "versions": [{"name": "v1", "served": True}]}},
        "here",
    )
    assert (
        crd is not None
        and crd.validate({"apiVersion": "x.io/v1", "kind": "Thing", "anything": 1}, "v1") == []
    )
    assert crd.served == ["x.io/v1"]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("refresh_schemas", REPO / "scripts" / "refresh_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refresh_script_reproduces_the_shipped_data(tmp_path: Path) -> None:
    """The shipped files, fed back to the script as CRD YAML, come out the same."""
    index = json.loads((DATA / "index.json").read_text())
    crds = [json.loads((DATA / f).read_text()) for kinds in index["kinds"].values() for f in kinds.values()]
    source = tmp_path / "crds.yaml"
    source.write_text(yaml.safe_dump_all(crds), encoding="utf-8")
    out = tmp_path / "flux"
    assert load_script().main(["--release", index["release"], "--out", str(out), str(source)]) == 0
    written = json.loads((out / "index.json").read_text())
    assert written["kinds"] == index["kinds"] and written["release"] == index["release"]
    for kinds in index["kinds"].values():
        for rel in kinds.values():
            assert (out / rel).read_text() == (DATA / rel).read_text(), rel


def test_refresh_script_strips_docs_and_adds_operator_kinds(tmp_path: Path) -> None:
    alert = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "alerts.notification.toolkit.fluxcd.io"},
        "spec": {
            "group": "notification.toolkit.fluxcd.io",
            "names": {"kind": "Alert", "plural": "alerts"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1beta3",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": "An alert.",
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "description": {"type": "string", "description": "a field named so"},
                                        "eventSources": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "kind": {"type": "string", "enum": ["Kustomization"]}
                                                },
                                            },
                                        },
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    other = {**alert, "spec": {**alert["spec"], "group": "example.com"}}
    source = tmp_path / "alert.yaml"
    source.write_text(yaml.safe_dump_all([alert, other]), encoding="utf-8")
    out = tmp_path / "flux"
    load_script().main(["--release", "v0.0.1", "--out", str(out), str(source)])
    written = json.loads((out / "index.json").read_text())
    assert written["kinds"] == {
        "notification.toolkit.fluxcd.io": {"Alert": "notification.toolkit.fluxcd.io/alert.json"}
    }
    data = json.loads((out / "notification.toolkit.fluxcd.io/alert.json").read_text())
    schema = data["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "description" not in schema
    spec = schema["properties"]["spec"]["properties"]
    assert spec["description"] == {"type": "string"}
    assert spec["eventSources"]["items"]["properties"]["kind"]["enum"] == [
        "Kustomization",
        "FluxInstance",
        "ResourceSet",
        "ResourceSetInputProvider",
    ]


def test_shipped_flux_release() -> None:
    assert flux_schemas.release().startswith("v2.7.")
    assert {"ExternalArtifact", "OCIRepository", "GitRepository"} <= set(
        flux_schemas.kinds("source.toolkit.fluxcd.io")
    )
    assert flux_schemas.kinds("source.extensions.fluxcd.io") == ["ArtifactGenerator"]
    oci = flux_schemas.crd("source.toolkit.fluxcd.io", "OCIRepository")
    assert oci is not None and oci.served[0] == "source.toolkit.fluxcd.io/v1"
