"""Flux's build of a Kustomization against the real kustomize on the kustomization a person would write.

Each Kustomization of ``tests/flux_build/kustomizations.yaml`` is built as kustomize-controller builds
it; ``kubectl kustomize tests/flux_build/expected/<name>`` (written by hand from the Flux docs) must
give the same objects. Further tests cover the generated kustomization, failures, substituteFrom
sources and the cache.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxops.layout.flux_build import flux_build, lookup_in, plan, source_folder
from fluxops.layout.flux_generator import scan_manifests
from fluxops.layout.kustomize import BUILD_FLAGS, Builder, kubectl
from fluxops.layout.overlay import Overlay
from fluxops.layout.tree import load
from fluxops.shell import local

FIXTURES = Path(__file__).resolve().parents[1] / "flux_build"
SOURCE = FIXTURES / "source"
KUSTOMIZATIONS = {
    ks["metadata"]["name"]: ks
    for ks in yaml.safe_load_all((FIXTURES / "kustomizations.yaml").read_text(encoding="utf-8"))
}
SETTINGS = [
    doc
    for path in sorted((SOURCE / "settings").glob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
]


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """The real kustomize's objects for ``folder`` (the oracle)."""
    result = local().run([kubectl(), "kustomize", *BUILD_FLAGS, str(folder)], timeout=120, check=False)
    assert result.rc == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    md = obj["metadata"]
    return obj["kind"], md.get("namespace", ""), md["name"]


def ordered(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects in a fixed order (Flux applies in an order of its own; kustomize's is not compared)."""
    return sorted(objects, key=identity)


def ks_for(path: str, **spec: Any) -> dict[str, Any]:
    """A Flux Kustomization in flux-system building ``path`` with the given spec fields."""
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "test", "namespace": "flux-system"},
        "spec": {"path": path, "interval": "10m", "prune": True, **spec},
    }


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def config_map(name: str, data: dict[str, str], namespace: str = "flux-system") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


# --- every feature against kustomize ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_flux_build_equals_kustomize_on_the_hand_written_kustomization(name: str) -> None:
    result = flux_build(KUSTOMIZATIONS[name], SOURCE, Builder(None), lookup_in(SETTINGS))
    assert result.ok, result.problems
    assert result.objects
    assert ordered(result.objects) == ordered(kustomize(FIXTURES / "expected" / name))


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_each_case_differs_from_building_the_folder_as_it_is(name: str) -> None:
    """The feature under test changes what is applied (so the comparison above proves something)."""
    folder = SOURCE / KUSTOMIZATIONS[name]["spec"]["path"]
    plain = Builder(None).build(folder)
    flux = flux_build(KUSTOMIZATIONS[name], SOURCE, Builder(None), lookup_in(SETTINGS))
    assert not plain.ok or ordered(plain.objects) != ordered(flux.objects)


def test_the_kustomization_flux_writes_merges_into_the_folders_own() -> None:
    merged = plan(KUSTOMIZATIONS["all-features"], SOURCE).kustomization
    assert merged is not None and not merged.generated
    data = merged.data
    assert (data["namespace"], data["namePrefix"], data["nameSuffix"]) == ("shop", "all-", "-x")
    assert [p["target"] for p in data["patches"]] == [{"kind": "Deployment"}, {"kind": "Deployment"}]
    assert data["images"] == [
        {"name": "ghcr.io/stefanprodan/podinfo", "newTag": "6.0.0"},
        {"name": "busybox", "newTag": "1.37"},
    ]
    assert data["components"] == ["../../components/ingress"]


# --- the generated kustomization.yaml ----------------------------------------------------------


def test_generated_resources_follow_fluxs_walk() -> None:
    # .yaml/.yml only (not notes.txt, not upper.YAML), lexical and depth first, a sub-folder with a
    # kustomization as one entry (withkust/extra.yaml not listed), source-controller's default
    # exclusions left out (.github/, .gitlab-ci.yml, .flux.yaml).
    assert scan_manifests(SOURCE / "plain") == ["./a.yaml", "./b.yml", "./nested/d.yaml", "./withkust"]


def test_a_folder_without_manifests_builds_to_nothing(tmp_path: Path) -> None:
    write(tmp_path, {"empty/README.md": "no manifests here\n"})
    result = flux_build(ks_for("./empty"), tmp_path, Builder(None))
    assert result.ok and result.objects == []
    assert plan(ks_for("./empty"), tmp_path).kustomization.data["namespace"] == "_placeholder"  # type: ignore[union-attr]


def test_generated_kustomization_fails_on_a_yaml_file_that_is_no_manifest(tmp_path: Path) -> None:
    # Flux's docs: every YAML file under the path must be a Kubernetes manifest.
    write(
        tmp_path, {"app/values.yaml": "replicaCount: 2\n", "app/cm.yaml": yaml.safe_dump(config_map("a", {}))}
    )
    result = flux_build(ks_for("./app"), tmp_path, Builder(None))
    assert not result.ok and result.build_failed
    assert "values.yaml" in result.problems[0].message


def test_unknown_field_fails_plain_kustomize_but_not_flux() -> None:
    assert not Builder(None).build(SOURCE / "lenient").ok
    merged = plan(KUSTOMIZATIONS["unknown-field"], SOURCE).kustomization
    assert merged is not None and merged.dropped == ["notAKustomizeField"]


def test_a_folder_flux_leaves_alone_is_the_plain_build() -> None:
    flux_plan = plan(ks_for("./vars"), SOURCE)
    assert flux_plan.target == (SOURCE / "vars").resolve()
    assert not isinstance(flux_plan.target, Overlay)


def test_building_never_writes_into_the_source() -> None:
    before = sorted(p for p in SOURCE.rglob("*"))
    for ks in KUSTOMIZATIONS.values():
        flux_build(ks, SOURCE, Builder(None), lookup_in(SETTINGS))
    assert sorted(p for p in SOURCE.rglob("*")) == before


# --- what stops a build ----------------------------------------------------------------------


def test_path_that_does_not_exist(tmp_path: Path) -> None:
    result = flux_build(ks_for("./nope"), tmp_path, Builder(None))
    assert not result.ok and result.problems[0].keys == ("spec", "path")
    assert "kustomization path not found" in result.problems[0].message


def test_path_stays_inside_the_source() -> None:
    assert source_folder(Path("/src"), "../../etc/x") == Path("/src/etc/x")
    assert source_folder(Path("/src"), "./") == Path("/src")
    assert source_folder(Path("/src"), "") == Path("/src")


@pytest.mark.parametrize(
    "component", ["https://github.com/example/components//tls", "/abs/tls", "git@github.com:x/y"]
)
def test_component_must_be_local_and_relative(component: str) -> None:
    result = flux_build(ks_for("./apps/podinfo", components=[component]), SOURCE, Builder(None))
    assert not result.ok
    assert result.problems[0].keys == ("spec", "components", 0)
    assert "must be local and relative" in result.problems[0].message


def test_missing_component_fails_unless_ignored() -> None:
    ks = ks_for("./apps/podinfo", components=["../../components/ingress", "../../components/absent"])
    result = flux_build(ks, SOURCE, Builder(None))
    assert not result.ok and result.problems[0].keys == ("spec", "components", 1)
    ks["spec"]["ignoreMissingComponents"] = True
    assert flux_build(ks, SOURCE, Builder(None)).ok


def test_kustomize_failure_is_the_builds_problem() -> None:
    ks = ks_for(
        "./apps/podinfo",
        patches=[{"patch": "- op: remove\n  path: /spec/nothing\n", "target": {"kind": "Service"}}],
    )
    result = flux_build(ks, SOURCE, Builder(None))
    assert not result.ok and result.build_failed
    assert result.problems[0].message.startswith("kustomize build failed:")
    assert "fluxops-flux-build-" not in result.problems[0].message  # shadow paths are mapped back


# --- postBuild --------------------------------------------------------------------------------


def test_required_substitute_from_missing_stops_the_build() -> None:
    result = flux_build(KUSTOMIZATIONS["post-build"], SOURCE, Builder(None), lookup_in([]))
    assert not result.ok and result.objects == []
    assert [(m.index, m.kind, m.name, m.namespace) for m in result.missing] == [
        (0, "ConfigMap", "cluster-settings", "flux-system"),
        (1, "ConfigMap", "overrides", "flux-system"),
    ]  # entry 2 is optional: absent and tolerated


def test_substitute_from_reads_the_kustomizations_namespace_only() -> None:
    elsewhere = [{**cm, "metadata": {**cm["metadata"], "namespace": "default"}} for cm in SETTINGS]
    result = flux_build(KUSTOMIZATIONS["post-build"], SOURCE, Builder(None), lookup_in(elsewhere))
    assert not result.ok and len(result.missing) == 2


def test_without_any_variable_nothing_is_substituted(tmp_path: Path) -> None:
    # Flux docs: substitution only happens when at least one variable is defined, defaults included.
    write(tmp_path, {"app/cm.yaml": yaml.safe_dump(config_map("c", {"tag": "${TAG:=v1}"}))})
    optional_only = {"substituteFrom": [{"kind": "ConfigMap", "name": "absent", "optional": True}]}
    result = flux_build(ks_for("./app", postBuild=optional_only), tmp_path, Builder(None), lookup_in([]))
    assert result.ok and result.objects[0]["data"] == {"tag": "${TAG:=v1}"}
    with_one = {**optional_only, "substitute": {"ANY": "x"}}
    result = flux_build(ks_for("./app", postBuild=with_one), tmp_path, Builder(None), lookup_in([]))
    assert result.objects[0]["data"] == {"tag": "v1"}


def test_objects_that_opt_out_never_load_variables(tmp_path: Path) -> None:
    cm = config_map("c", {"v": "${X}"})
    cm["metadata"]["labels"] = {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}
    write(tmp_path, {"app/cm.yaml": yaml.safe_dump(cm)})
    required = {"substituteFrom": [{"kind": "ConfigMap", "name": "absent"}]}
    result = flux_build(ks_for("./app", postBuild=required), tmp_path, Builder(None), lookup_in([]))
    assert result.ok and result.objects[0]["data"] == {"v": "${X}"}


def test_secret_values_are_decoded_and_string_data_wins(tmp_path: Path) -> None:
    write(tmp_path, {"app/cm.yaml": yaml.safe_dump(config_map("c", {"v": "${USER}-${TOKEN}"}))})
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "vars", "namespace": "flux-system"},
        "data": {"USER": base64.b64encode(b"alice").decode(), "TOKEN": base64.b64encode(b"old").decode()},
        "stringData": {"TOKEN": "new\n"},
    }
    post = {"substituteFrom": [{"kind": "Secret", "name": "vars"}]}
    result = flux_build(ks_for("./app", postBuild=post), tmp_path, Builder(None), lookup_in([secret]))
    assert result.ok and result.objects[0]["data"] == {"v": "alice-new"}  # newlines are dropped from values


def test_values_of_an_encrypted_secret_stay_as_written(tmp_path: Path) -> None:
    write(tmp_path, {"app/cm.yaml": yaml.safe_dump(config_map("c", {"v": "${DOMAIN} ${PASSWORD}"}))})
    encrypted = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "secret-vars", "namespace": "flux-system"},
        "stringData": {"PASSWORD": "ENC[AES256_GCM,data:abc=,iv:x,tag:y,type:str]"},
        "sops": {"age": [], "mac": "ENC[...]", "version": "3.9.0"},
    }
    post = {
        "substitute": {"DOMAIN": "example.com"},
        "substituteFrom": [{"kind": "Secret", "name": "secret-vars"}],
    }
    result = flux_build(ks_for("./app", postBuild=post), tmp_path, Builder(None), lookup_in([encrypted]))
    assert result.ok and result.objects[0]["data"] == {"v": "example.com ${PASSWORD}"}


def test_invalid_variable_names_stop_the_build(tmp_path: Path) -> None:
    write(tmp_path, {"app/cm.yaml": yaml.safe_dump(config_map("c", {"v": "${OK}"}))})
    post = {"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]}
    bad = config_map("vars", {"OK": "1", "not-valid": "2"})
    result = flux_build(ks_for("./app", postBuild=post), tmp_path, Builder(None), lookup_in([bad]))
    assert not result.ok
    assert result.problems[0].keys == ("spec", "postBuild", "substituteFrom", 0)
    assert "'not-valid'" in result.problems[0].message


def test_substitute_values_must_be_strings(tmp_path: Path) -> None:
    write(tmp_path, {"app/cm.yaml": yaml.safe_dump(config_map("c", {"v": "${N}"}))})
    result = flux_build(ks_for("./app", postBuild={"substitute": {"N": 3}}), tmp_path, Builder(None))
    assert not result.ok and result.problems[0].keys == ("spec", "postBuild", "substitute", "N")


def test_envsubst_syntax_error_stops_the_build(tmp_path: Path) -> None:
    write(tmp_path, {"app/cm.yaml": yaml.safe_dump(config_map("c", {"v": "${X-default}"}))})
    result = flux_build(ks_for("./app", postBuild={"substitute": {"X": "1"}}), tmp_path, Builder(None))
    assert not result.ok
    assert result.problems[0].message == (
        "post build failed for 'ConfigMap/c': envsubst error: missing closing brace"
    )


def test_common_metadata_is_not_substituted_and_comes_last(tmp_path: Path) -> None:
    write(tmp_path, {"app/cm.yaml": yaml.safe_dump(config_map("c", {"v": "${X}"}))})
    ks = ks_for(
        "./app",
        postBuild={"substitute": {"X": "one"}},
        commonMetadata={"labels": {"kustomize.toolkit.fluxcd.io/substitute": "disabled", "v": "${X}"}},
    )
    result = flux_build(ks, tmp_path, Builder(None))
    assert result.ok and result.objects[0]["data"] == {"v": "one"}
    assert result.objects[0]["metadata"]["labels"] == {
        "kustomize.toolkit.fluxcd.io/substitute": "disabled",
        "v": "${X}",
    }


# --- the cache ---------------------------------------------------------------------------------


def test_flux_builds_are_cached_by_content(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(SOURCE, source)
    cache = tmp_path / "cache"
    ks = KUSTOMIZATIONS["all-features"]
    first = flux_build(ks, source, Builder(cache), lookup_in(SETTINGS))
    again = flux_build(ks, source, Builder(cache), lookup_in(SETTINGS))
    assert first.ok and not first.cached and again.cached and again.objects == first.objects
    changed = json.loads(json.dumps(ks))
    changed["spec"]["namePrefix"] = "other-"
    renamed = flux_build(changed, source, Builder(cache), lookup_in(SETTINGS))
    assert not renamed.cached and {o["metadata"]["name"] for o in renamed.objects} != {
        o["metadata"]["name"] for o in first.objects
    }
    (source / "components/ingress/ingress.yaml").write_text(
        (source / "components/ingress/ingress.yaml")
        .read_text()
        .replace("podinfo.example.com", "other.example.com")
    )
    edited = flux_build(ks, source, Builder(cache), lookup_in(SETTINGS))
    assert not edited.cached and edited.objects != first.objects


# --- in the tree -------------------------------------------------------------------------------

ROOT_KUSTOMIZATION = """\
resources:
  - settings.yaml
  - apps.yaml
  - platform.yaml
"""
SETTINGS_CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cluster-settings
  namespace: flux-system
data:
  DOMAIN: demo.example.com
"""


def phase_ks(name: str, path: str, spec: str = "") -> str:
    return (
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"
        f"metadata:\n  name: {name}\n  namespace: flux-system\n"
        "spec:\n  interval: 10m\n  prune: true\n"
        "  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
        f"  path: {path}\n{spec}"
    )


APPS_SPEC = """\
  namePrefix: demo-
  postBuild:
    substituteFrom:
      - kind: ConfigMap
        name: cluster-settings
      - kind: ConfigMap
        name: platform-settings
"""


def demo_repo(root: Path, apps_spec: str = APPS_SPEC) -> Path:
    """A cluster whose apps phase needs a ConfigMap from the root and one the platform phase applies."""
    return write(
        root,
        {
            "k8s/clusters/demo/kustomization.yaml": ROOT_KUSTOMIZATION,
            "k8s/clusters/demo/settings.yaml": SETTINGS_CM,
            "k8s/clusters/demo/apps.yaml": phase_ks("apps", "./k8s/apps", apps_spec),
            "k8s/clusters/demo/platform.yaml": phase_ks("platform", "./k8s/platform"),
            "k8s/apps/app.yaml": yaml.safe_dump(
                config_map("app", {"url": "https://${DOMAIN}", "tier": "${TIER}"}, "web")
            ),
            "k8s/platform/kustomization.yaml": "resources:\n  - settings.yaml\n",
            "k8s/platform/settings.yaml": yaml.safe_dump(config_map("platform-settings", {"TIER": "gold"})),
        },
    )


def test_tree_phases_hold_what_flux_applies(tmp_path: Path) -> None:
    tree = load(demo_repo(tmp_path), cache=False)
    assert tree.findings.errors == []
    apps = tree.clusters["demo"].phase("apps")
    assert apps is not None
    # apps was built first and waited for platform's ConfigMap; its folder has no kustomization.yaml
    assert apps.objects == [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "demo-app", "namespace": "web"},
            "data": {"url": "https://demo.example.com", "tier": "gold"},
        }
    ]
    # valid Flux: no finding of its own; the folder is recorded for a repository policy that asks for the file
    assert tree.findings.warnings == []
    assert [(c, folder) for c, folder, _ in tree.generated] == [("demo", apps.path.removeprefix("./"))]


def test_tree_reports_a_missing_substitute_from_at_its_line(tmp_path: Path) -> None:
    spec = APPS_SPEC.replace("name: platform-settings", "name: nowhere")
    tree = load(demo_repo(tmp_path, spec), cache=False)
    [finding] = tree.findings.errors
    assert finding.code == "substitute-missing"
    assert (finding.file, finding.cluster, finding.phase) == ("k8s/clusters/demo/apps.yaml", "demo", "apps")
    lines = (tmp_path / "k8s/clusters/demo/apps.yaml").read_text().splitlines()
    assert lines[finding.line - 1].strip() == "- kind: ConfigMap" and "nowhere" in lines[finding.line]
    assert "ConfigMap flux-system/nowhere" in finding.message


def test_tree_reports_a_failed_flux_build_at_the_kustomization(tmp_path: Path) -> None:
    spec = (
        '  patches:\n    - patch: "- op: remove\\n  path: /nothing"\n      target:\n        kind: ConfigMap\n'
    )
    tree = load(demo_repo(tmp_path, spec), cache=False)
    [finding] = tree.findings.errors
    assert (finding.code, finding.file, finding.phase) == ("build", "k8s/clusters/demo/apps.yaml", "apps")
    assert "Flux's build of k8s/apps fails" in finding.message


BOOTSTRAP = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 10m
  path: ./k8s/clusters/demo
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
  postBuild:
    substituteFrom:
      - kind: ConfigMap
        name: cluster-settings
"""


def test_the_bootstrap_kustomization_builds_the_root(tmp_path: Path) -> None:
    # flux-system's own postBuild substitutes the phase Kustomizations it applies (here spec.path).
    root = demo_repo(tmp_path, APPS_SPEC.replace("platform-settings", "cluster-settings"))
    write(
        root,
        {
            "k8s/clusters/demo/kustomization.yaml": ROOT_KUSTOMIZATION + "  - gotk-sync.yaml\n",
            "k8s/clusters/demo/gotk-sync.yaml": BOOTSTRAP,
            "k8s/clusters/demo/settings.yaml": SETTINGS_CM + "  APPS: apps\n",
            "k8s/clusters/demo/apps.yaml": phase_ks("apps", "./k8s/${APPS}"),
        },
    )
    tree = load(root, cache=False)
    assert tree.findings.errors == []
    apps = tree.clusters["demo"].phase("apps")
    assert apps is not None and apps.path == "./k8s/apps" and apps.objects
    (root / "k8s/clusters/demo/gotk-sync.yaml").write_text(BOOTSTRAP.replace("cluster-settings", "nowhere"))
    [finding, *_] = load(root, cache=False).findings.errors
    assert (finding.code, finding.file) == ("flux-build", "k8s/clusters/demo/gotk-sync.yaml")
    assert "ConfigMap flux-system/nowhere" in finding.message
