"""Releases that hold up: vendored CRDs, exact chart versions, Renovate, phx's load balancer choice.

Oracles: the real kustomize (``kubectl kustomize``) builds the crds phase, Renovate's published JSON
schema (tests/release_fixtures/renovate-schema.json) checks renovate.json, ``git ls-files`` says
which files exist, and ``sh`` runs node.yaml's address check on this machine.
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxops.layout.validate import validate
from fluxops.runner import playbook
from fluxops.runner.templating import Templar
from tests.layout_fixtures import REPO, THIS_REPO, copy_tree

FIXTURES = REPO / "tests" / "release_fixtures"
SCRIPT = REPO / "scripts" / "refresh_crds.py"
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
PRUNE = "kustomize.toolkit.fluxcd.io/prune"
ANNOTATION_LINE = re.compile(r"^\s*(annotations:|kustomize\.toolkit\.fluxcd\.io/prune: disabled)\s*$")
# An exact chart version: semver 2 (an optional leading v, as Helm accepts), no range, no wildcard.
EXACT = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
PHX_CHOICE = "components:\n  - networking/metallb\n"


def yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


# --- the crds phase ---------------------------------------------------------------------------


def crds_phase_paths() -> set[str]:
    """The spec.path of every cluster's crds phase."""
    paths = set()
    for phase in REPO.glob("k8s/clusters/*/crds.yaml"):
        for doc in yaml_docs(phase):
            if doc.get("kind") == "Kustomization":
                paths.add(doc["spec"]["path"])
    return paths


def built(folder: str) -> list[dict[str, Any]]:
    """What the real kustomize builds from ``folder``."""
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(REPO / folder)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_every_crd_of_the_crds_phase_has_a_structural_schema_and_is_never_pruned() -> None:
    paths = crds_phase_paths()
    assert paths == {"./k8s/base/crds"}
    crds = [o for o in built("k8s/base/crds") if o["kind"] == "CustomResourceDefinition"]
    groups = {c["spec"]["group"] for c in crds}
    assert {"metallb.io", "traefik.io"} <= groups
    for crd in crds:
        name = crd["metadata"]["name"]
        assert crd["metadata"]["annotations"][PRUNE] == "disabled", name
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            assert not schema.get("x-kubernetes-preserve-unknown-fields"), (name, version["name"])
            assert schema.get("type") == "object" and schema.get("properties"), (name, version["name"])
            # spec (or, for a status-only kind, status) names its fields
            parts = [schema["properties"].get(k) or {} for k in ("spec", "status")]
            assert any(p.get("properties") for p in parts), (name, version["name"])
            assert not any(p.get("x-kubernetes-preserve-unknown-fields") for p in parts), (
                name,
                version["name"],
            )


def test_the_tree_s_custom_resources_have_their_crd_in_the_crds_phase() -> None:
    kinds = {
        (c["spec"]["group"], c["spec"]["names"]["kind"])
        for c in built("k8s/base/crds")
        if c["kind"] == "CustomResourceDefinition"
    }
    used = set()
    for path in REPO.glob("k8s/clusters/**/*.yaml"):
        if path.name.endswith(".sops.yaml"):
            continue
        for doc in yaml_docs(path):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).split("/")[0] in (
                "metallb.io",
                "traefik.io",
            ):
                used.add((doc["apiVersion"].split("/")[0], doc["kind"]))
    assert used and used <= kinds, used - kinds


def test_each_vendored_crd_file_names_its_source_commit() -> None:
    for path in (REPO / "k8s/base/crds").glob("*-crds.yaml"):
        header = path.read_text(encoding="utf-8").split("\n---\n", 1)[0]
        assert re.search(r"^# Source: github\.com/\S+@[0-9a-f]{40} ", header, re.M), path.name
        assert "refresh_crds.py" in header


# --- scripts/refresh_crds.py ------------------------------------------------------------------


def chart_archive(tmp_path: Path) -> Path:
    """The fixture chart packed as ``helm package`` packs it (a .tgz with the chart's folder on top)."""
    archive = tmp_path / "widget-1.2.3.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(FIXTURES / "widget-chart", arcname="widget")
    return archive


def refresh(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def documents(text: str) -> list[str]:
    """The documents of a vendored file after its header, as text."""
    return [d for d in re.split(r"(?m)^---\n", text)[1:] if d.strip()]


def upstream(rel: str) -> str:
    """A fixture file's CRD document as upstream wrote it (its first document, leading --- aside)."""
    text = (FIXTURES / "widget-chart" / rel).read_text(encoding="utf-8")
    return re.split(r"(?m)^---\n", text.removeprefix("---\n"))[0]


def test_refresh_crds_vendors_a_chart_archive_verbatim_with_the_prune_annotation(tmp_path: Path) -> None:
    out = tmp_path / "widget-crds.yaml"
    result = refresh(
        "--out", out, "--namespace", "widgets", "--source", "example/widget@abc", chart_archive(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{out}: 3 CRDs"
    text = out.read_text(encoding="utf-8")
    assert "# Source: example/widget@abc\n" in text.split("---\n", 1)[0]
    docs = documents(text)
    # archive order: widget/charts/crds/templates/crds.yaml, then widget/crds/* sorted
    names = [yaml.safe_load(d)["metadata"]["name"] for d in docs]
    assert names == ["sprockets.example.com", "widgets.example.com", "gadgets.other.example.org"]
    sources = [
        upstream("charts/crds/templates/crds.yaml").replace("{{ .Release.Namespace }}", "widgets"),
        upstream("crds/example.com_widgets.yaml"),
        upstream("crds/other.example.org_gadgets.yaml"),
    ]
    for doc, source in zip(docs, sources, strict=True):
        diff = list(difflib.ndiff(source.splitlines(), doc.splitlines()))
        removed = [line for line in diff if line.startswith("- ")]
        added = [line[2:] for line in diff if line.startswith("+ ")]
        assert removed == [], removed  # nothing upstream wrote is lost or changed
        assert added and all(ANNOTATION_LINE.match(line) for line in added), added
        expected = yaml.safe_load(source)
        expected["metadata"].setdefault("annotations", {})[PRUNE] = "disabled"
        assert yaml.safe_load(doc) == expected
    # the 4-space file keeps its indentation; the existing annotations block gains one line
    assert "metadata:\n    annotations:\n        kustomize.toolkit.fluxcd.io/prune: disabled\n" in docs[2]
    assert "  annotations:\n    kustomize.toolkit.fluxcd.io/prune: disabled\n    controller-gen" in docs[1]
    assert "namespace: widgets\n" in docs[0]


def test_refresh_crds_from_files_keeps_the_groups_asked_for_and_check_says_when_stale(tmp_path: Path) -> None:
    out = tmp_path / "crds.yaml"
    files = sorted((FIXTURES / "widget-chart" / "crds").glob("*.yaml"))
    args = ("--out", out, "--group", "example.com", "--source", "s", *files)
    assert refresh(*args).returncode == 0
    assert [yaml.safe_load(d)["metadata"]["name"] for d in documents(out.read_text())] == [
        "widgets.example.com"
    ]
    assert refresh("--check", *args).returncode == 0
    out.write_text(out.read_text().replace("size:", "sise:"))
    stale = refresh("--check", *args)
    assert stale.returncode == 1 and "differs" in stale.stderr
    # a vendored file given back as input comes out the same (the annotation is not added twice)
    again = tmp_path / "again.yaml"
    assert refresh("--out", again, "--source", "s", "--group", "example.com", *files).returncode == 0
    assert refresh("--out", tmp_path / "twice.yaml", "--source", "s", again).returncode == 0
    assert documents((tmp_path / "twice.yaml").read_text()) == documents(again.read_text())


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        pytest.param(
            "kind: CustomResourceDefinition\nmetadata:\n  name: a\n  namespace: {{ .Release.Namespace }}\n",
            (),
            "x.yaml:4: {{ .Release.Namespace }} needs --namespace",
            id="namespace-without-option",
        ),
        pytest.param(
            "kind: CustomResourceDefinition\nmetadata:\n  name: a\nspec:\n  x: {{ .Values.y }}\n",
            ("--namespace", "n"),
            "x.yaml:5: Helm template directive '{{ .Values.y }}'",
            id="other-template",
        ),
        pytest.param(
            "kind: CustomResourceDefinition\nmetadata: {name: a}\n",
            (),
            "x.yaml:1: no block 'metadata:'",
            id="flow-metadata",
        ),
        pytest.param(
            "kind: ConfigMap\nmetadata:\n  name: a\n", (), "no CustomResourceDefinition found", id="no-crd"
        ),
    ],
)
def test_refresh_crds_refuses_what_it_cannot_vendor_verbatim(
    tmp_path: Path, text: str, args: tuple[str, ...], message: str
) -> None:
    source = tmp_path / "x.yaml"
    source.write_text(text)
    result = refresh("--out", tmp_path / "out.yaml", *args, source)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "out.yaml").exists()


# --- chart versions ---------------------------------------------------------------------------


def helm_releases() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(REPO.glob("k8s/**/*.yaml")):
        if path.name.endswith(".sops.yaml"):
            continue
        for doc in yaml_docs(path):
            if isinstance(doc, dict) and doc.get("kind") == "HelmRelease":
                found.append((str(path.relative_to(REPO)), doc))
    return found


@pytest.mark.parametrize(
    ("version", "exact"),
    [
        ("4.6.1", True),
        ("v1.21.1", True),
        ("1.0.0-rc.1+build.5", True),
        ("4.x", False),
        ("0.14.x", False),
        ("*", False),
        (">=1.0.0", False),
        ("~1.2.3", False),
        ("^1.2.3", False),
        ("1.2", False),
        ("1.2.3 || 1.3.0", False),
        ("", False),
    ],
)
def test_what_an_exact_chart_version_is(version: str, exact: bool) -> None:
    assert bool(EXACT.match(version)) is exact


def test_every_helm_release_names_an_exact_chart_version() -> None:
    releases = helm_releases()
    assert len(releases) >= 5
    for where, release in releases:
        chart = release["spec"].get("chart", {}).get("spec", {})
        assert "chartRef" in release["spec"] or chart, where
        if chart:
            assert EXACT.match(str(chart.get("version", ""))), (where, chart.get("version"))


def test_the_flux_release_the_tree_needs_is_stated_once() -> None:
    hosts = yaml.safe_load((REPO / "inventory/hosts.yaml").read_text())
    version = hosts["all"]["vars"]["flux_version"]
    major, minor = (int(n) for n in re.fullmatch(r"v(\d+)\.(\d+)\.\d+", version).groups())  # type: ignore[union-attr]
    assert (major, minor) >= (2, 8)  # helm-controller's kstatus wait (Traefik's LoadBalancer Service)
    for cluster in hosts["all"]["children"].values():
        assert "flux_version" not in cluster.get("vars", {})


# --- Renovate ---------------------------------------------------------------------------------

RENOVATE_SCHEMA = json.loads((FIXTURES / "renovate-schema.json").read_text(encoding="utf-8"))


def option_names(schema: Any) -> set[str]:
    """Every option name the schema defines, at any depth (Renovate refuses any other key)."""
    names: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                names |= set(value)
            names |= option_names(value)
    elif isinstance(schema, list):
        for item in schema:
            names |= option_names(item)
    return names


KNOWN_OPTIONS = option_names(RENOVATE_SCHEMA) | {"$schema"}


def unknown_keys(config: Any) -> list[str]:
    found = []
    if isinstance(config, dict):
        for key, value in config.items():
            if key not in KNOWN_OPTIONS:
                found.append(key)
            found.extend(unknown_keys(value))
    elif isinstance(config, list):
        for item in config:
            found.extend(unknown_keys(item))
    return found


def renovate_problems(config: Any) -> list[str]:
    """What Renovate's schema (and its refusal of unknown options) says of ``config``."""
    from jsonschema import Draft7Validator

    problems = [
        f"{list(e.absolute_path)}: {e.message}" for e in Draft7Validator(RENOVATE_SCHEMA).iter_errors(config)
    ]
    return problems + [f"unknown option {key!r}" for key in unknown_keys(config)]


def renovate_config() -> dict[str, Any]:
    return json.loads((REPO / "renovate.json").read_text(encoding="utf-8"))


def test_the_vendored_renovate_schema_says_where_it_comes_from() -> None:
    assert RENOVATE_SCHEMA["x-renovate-version"] == "43.8.2"
    notes = (FIXTURES / "README.md").read_text(encoding="utf-8")
    assert "6204948345c7960d724c341acceba8a8a52b7e77" in notes and "renovate-schema.json" in notes


def test_renovate_config_validates_against_renovates_schema() -> None:
    assert renovate_problems(renovate_config()) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"packageRule": []}, "unknown option 'packageRule'", id="typo"),
        pytest.param(
            {"prConcurrentLimit": "ten"}, "['prConcurrentLimit']: 'ten' is not of type 'integer'", id="type"
        ),
        pytest.param(
            {"automerge": "yes"}, "['automerge']: 'yes' is not of type 'boolean'", id="not-a-boolean"
        ),
        pytest.param({"flux": {"fileMatchs": ["x"]}}, "unknown option 'fileMatchs'", id="manager-typo"),
    ],
)
def test_a_broken_renovate_config_is_caught(change: dict[str, Any], expected: str) -> None:
    problems = renovate_problems({**renovate_config(), **change})
    assert any(expected in p for p in problems), problems


def js_regex(pattern: str) -> re.Pattern[str]:
    """A Renovate ``/regex/`` pattern (or a JS named group) as a Python pattern."""
    body = pattern[1:-1] if pattern.startswith("/") and pattern.endswith("/") else pattern
    return re.compile(body.replace("(?<", "(?P<"))


def test_renovate_managers_point_at_the_tree_s_files() -> None:
    config = renovate_config()
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    managers = [config[m] for m in ("flux", "kubernetes", "helm-values")] + config["customManagers"]
    for manager in managers:
        for pattern in manager["managerFilePatterns"]:
            assert any(js_regex(pattern).search(f) for f in files), pattern
    hosts = (REPO / "inventory/hosts.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(hosts)["all"]["vars"]
    for custom in config["customManagers"]:
        (match_string,) = custom["matchStrings"]
        found = js_regex(match_string).search(hosts)
        assert found is not None, match_string
        key = match_string.split(":", 1)[0]
        assert found["currentValue"] == values[key]
        if "versioningTemplate" in custom:
            assert js_regex(custom["versioningTemplate"].removeprefix("regex:")).match(values[key])


def test_renovate_pins_image_digests_and_flags_charts_with_vendored_crds() -> None:
    config = renovate_config()
    assert "docker:pinDigests" in config["extends"]
    vendored = next(r for r in config["packageRules"] if "crds" in r.get("addLabels", []))
    # the charts told not to install their CRDs: the crds phase holds them instead
    charts = {
        doc["spec"]["chart"]["spec"]["chart"]
        for _, doc in helm_releases()
        if doc["spec"].get("install", {}).get("crds") == "Skip"
    }
    assert set(vendored["matchPackageNames"]) == charts == {"metallb", "traefik"}


# --- phx: MetalLB or k3s ServiceLB ------------------------------------------------------------


@pytest.mark.parametrize("choice", ["metallb", "servicelb"])
def test_both_phx_load_balancer_choices_build_and_validate(tmp_path: Path, choice: str) -> None:
    root = copy_tree(tmp_path / "repo")
    root_file = root / "k8s/clusters/phx/kustomization.yaml"
    text = root_file.read_text(encoding="utf-8")
    assert PHX_CHOICE in text  # the shipped choice, in one place
    root_file.write_text(
        text.replace(PHX_CHOICE, f"components:\n  - networking/{choice}\n"), encoding="utf-8"
    )
    tree, findings = validate(root, "phx", layout=THIS_REPO)
    assert [f"{f.where}: {f.message}" for f in findings.errors] == []
    phx = tree.clusters["phx"]

    def kinds(phase: str) -> set[tuple[str, str]]:
        found = phx.phase(phase)
        assert found is not None, phase
        return {(o["kind"], o["metadata"]["name"]) for o in found.objects}

    def spec(name: str) -> dict:
        return next(
            o["spec"]
            for o in tree.root_objects("phx") + phx.phase("infrastructure").objects  # type: ignore[union-attr]
            if (o["kind"], o["metadata"]["name"]) == ("Kustomization", name)
        )

    metallb = {("HelmRelease", "metallb"), ("HelmRepository", "metallb")}
    pool = {("IPAddressPool", "public"), ("L2Advertisement", "public")}
    assert ("HelmRelease", "traefik") in kinds("traefik")
    applied = {("Kustomization", "metallb")} <= kinds("infrastructure")
    configured = {("Kustomization", "metallb-config")} <= kinds("infrastructure-config")
    if choice == "metallb":
        assert applied and configured and metallb <= kinds("metallb") and pool <= kinds("metallb-config")
    else:
        assert not applied and not configured and phx.phase("metallb") is phx.phase("metallb-config") is None
    # the phase health-checks what infrastructure-config needs: MetalLB's webhook, or Traefik
    # (which, with MetalLB, waits for the pool of a later phase and so cannot be checked)
    checked = [c["name"] for c in spec("infrastructure")["healthChecks"]]
    assert checked == (["metallb"] if choice == "metallb" else ["traefik"])
    assert ("metallb-config" in [d["name"] for d in spec("traefik")["dependsOn"]]) is (choice == "metallb")
    traefik = next(
        o
        for o in phx.phase("traefik").objects  # type: ignore[union-attr]
        if (o["kind"], o["metadata"]["name"]) == ("HelmRelease", "traefik")
    )
    annotations = traefik["spec"]["values"].get("service", {}).get("annotations", {})
    assert (annotations.get("metallb.io/loadBalancerIPs") == "85.31.234.30") is (choice == "metallb")
    recorded = [
        o
        for o in tree.root_objects("phx")
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "networking"
    ]
    assert [o["data"]["loadBalancer"] for o in recorded] == [choice]


def l2_check(address: str | None) -> tuple[bool, list[str], str]:
    """node.yaml's address check for ``address``: whether it runs, its argv, and its ``unless`` test."""
    book = playbook.load(REPO / "playbooks" / "node.yaml")
    play = next(p for p in book.plays if p.name == "k3s servers")
    task = next(t for t in play.tasks if t.name == "MetalLB's layer-2 address on this node's interface")
    host = {"inventory_hostname": "phx1", **({"metallb_l2_address": address} if address else {})}
    templar = Templar(host)
    templar = templar.with_vars({"l2_address": templar.render(play.vars["l2_address"])})
    args = templar.render(dict(task.args))
    return all(templar.truth(c) for c in task.when), args["argv"], args["unless"]


def test_node_bring_up_says_whether_metallb_can_hand_out_the_address() -> None:
    runs, _, _ = l2_check(None)
    assert not runs  # no metallb_l2_address (lab, or phx on ServiceLB): nothing to check
    runs, _, unless = l2_check("127.0.0.1")  # on this machine's loopback interface
    assert runs and subprocess.run(["sh", "-c", unless]).returncode == 0  # ok: MetalLB applies
    runs, argv, unless = l2_check("192.0.2.77")  # TEST-NET-1: on no interface
    assert runs and subprocess.run(["sh", "-c", unless]).returncode != 0
    failed = subprocess.run(argv, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "192.0.2.77 is on no interface of phx1" in failed.stderr
    assert "networking/servicelb" in failed.stderr and "docs/networking.md" in failed.stderr
