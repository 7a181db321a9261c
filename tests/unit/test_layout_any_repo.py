"""``layout.validate`` on Flux repositories in the shapes real users have (issue #10's acceptance tests).

The fixture repositories live in ``tests/repos/`` (what each mirrors: its README.md); "this
repository" is the checkout's own tree. Each test validates a copy in ``tmp_path``:

- every folder a Flux Kustomization points at builds with the real ``kubectl kustomize``, once the
  test has done what Flux does before building and can be done here by hand (the generated
  ``kustomization.yaml``, the Kustomization's own kustomize fields, the ExternalArtifact's copy rules);
- clean copies validate with no error, and with the Kustomizations and objects Flux would apply;
- each planted mistake (one small edit of one file) is an error pointing at the planted line.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml

from fluxops.layout.findings import Findings
from fluxops.layout.tree import Tree
from fluxops.layout.validate import validate
from fluxops.secrets.sops import Sops

REPO = Path(__file__).resolve().parents[2]
REPOS = REPO / "tests" / "repos"
KUBECTL = str(Path(sys.executable).with_name("kubectl"))
FLUXOPS = str(Path(sys.executable).with_name("fluxops"))
THIS = "this-repository"
FIXTURES = ("flux2-example", "home-ops", THIS)
# What a copy of this repository needs: its tree, sops rules, settings (the policy) and inventory.
THIS_REPOSITORY_PARTS = ("k8s", ".sops.yaml", "invoke.yaml", "inventory")
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
FLUX_KUSTOMIZE = "kustomize.toolkit.fluxcd.io/"
ARTIFACT_GENERATOR = "source.extensions.fluxcd.io/"

# The Flux Kustomizations each cluster applies, the entry one (flux-system) aside.
HOME_OPS_KUSTOMIZATIONS = [
    "cert-manager",
    "cert-manager-issuers",
    "cluster-apps",
    "echo",
    "envoy-gateway",
    "metrics-server",
    "radarr",
    "snapshot-controller",
    "snapshot-controller-crds",
    "whoami",
]
FLUX2_EXAMPLE_KUSTOMIZATIONS = ["apps", "infra-configs", "infra-controllers"]
THIS_REPOSITORY_PHASES = ["apps", "crds", "infrastructure", "infrastructure-config", "storage"]
# lab's phases apply one Kustomization per component (ks.yaml)
LAB_COMPONENTS = ["adguard", "external-dns", "homeassistant", "metallb", "metallb-config", "pocket-id"]
LAB_COMPONENTS += ["traefik", "traefik-config", "twingate", "unifi"]
PHX_COMPONENTS = ["external-dns", "metallb", "metallb-config", "traefik", "traefik-config", "twingate"]
PHX_COMPONENTS += ["uptime-kuma"]


# -- copies and findings --------------------------------------------------------------------------


def copy_fixture(name: str, dest: Path) -> Path:
    """A copy of the fixture repository ``name`` (or of this repository's tree) at ``dest``."""
    if name != THIS:
        shutil.copytree(REPOS / name, dest)
        return dest
    dest.mkdir(parents=True)
    for part in THIS_REPOSITORY_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, dest / part)
        else:
            shutil.copy2(source, dest / part)
    return dest


def listing(findings: Findings) -> str:
    """Every finding, one a line, for an assertion message."""
    lines = [f"{f.severity} {f.code} {f.file}:{f.line} [{f.cluster}] {f.message}" for f in findings.items]
    return "findings:\n  " + "\n  ".join(lines or ["(none)"])


def kustomization_names(tree: Tree) -> dict[str, list[str]]:
    """Cluster name -> the names of the Flux Kustomizations found in it, sorted."""
    return {name: sorted(p.name for p in c.phases) for name, c in tree.clusters.items()}


def applied(tree: Tree, cluster: str, kustomization: str) -> list[dict[str, Any]]:
    """The objects one Flux Kustomization of a cluster applies."""
    phase = tree.clusters[cluster].phase(kustomization)
    assert phase is not None, f"no Kustomization {kustomization} in {cluster}: {kustomization_names(tree)}"
    return phase.objects


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of that kind and name."""
    found = [o for o in objects if o.get("kind") == kind and (o.get("metadata") or {}).get("name") == name]
    names = sorted(f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}" for o in objects)
    assert len(found) == 1, f"{kind}/{name} among {names}"
    return found[0]


# -- what Flux does before kustomize, done by hand ------------------------------------------------


def yaml_documents(path: Path) -> list[Any]:
    """The documents of a YAML file (kustomize config files included)."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def flux_objects(root: Path, group: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, document) for every document of ``group`` in the repository's YAML files."""
    for path in sorted(root.rglob("*.y*ml")):
        if path.suffix not in (".yaml", ".yml"):
            continue
        for doc in yaml_documents(path):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(group):
                yield path, doc


def kustomization_file(folder: Path) -> Path | None:
    return next((folder / n for n in KUSTOMIZATION_FILES if (folder / n).is_file()), None)


def generated_resources(folder: Path) -> list[str]:
    """What Flux lists in the kustomization.yaml it writes for a folder without one."""
    found: list[str] = []

    def walk(current: Path) -> None:
        for entry in sorted(current.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                if kustomization_file(entry) is not None:
                    found.append(entry.relative_to(folder).as_posix())
                else:
                    walk(entry)
            elif entry.is_file() and entry.suffix in (".yaml", ".yml"):
                found.append(entry.relative_to(folder).as_posix())

    walk(folder)
    return found


def assemble_artifact(root: Path, generator: dict[str, Any], artifact: str, dest: Path) -> Path:
    """The ExternalArtifact ``artifact`` of an ArtifactGenerator, built by its copy rules into ``dest``.

    Only the rule form the fixtures use is understood: ``@alias/dir/**`` to ``@artifact/dir/``.
    """
    spec = next(a for a in generator["spec"]["artifacts"] if a["name"] == artifact)
    for rule in spec["copy"]:
        source, target = rule["from"], rule["to"]
        assert source.startswith("@") and source.endswith("/**"), f"copy rule this test cannot do: {rule}"
        assert target.startswith("@artifact/"), f"copy rule this test cannot do: {rule}"
        inside = source.split("/", 1)[1].removesuffix("/**")
        shutil.copytree(root / inside, dest / target.removeprefix("@artifact/"), dirs_exist_ok=True)
    return dest


def source_root(root: Path, ks_file: Path, ks: dict[str, Any], scratch: Path) -> Path:
    """Where the Kustomization's ``spec.path`` is read: the repository, or its ExternalArtifact."""
    ref = ks["spec"]["sourceRef"]
    if ref["kind"] == "GitRepository":
        return root
    assert ref["kind"] == "ExternalArtifact", f"{ks_file}: source {ref} is out of this test's reach"
    generators = [
        doc
        for path, doc in flux_objects(ks_file.parent, ARTIFACT_GENERATOR)
        if path.parent == ks_file.parent and doc.get("kind") == "ArtifactGenerator"
    ]
    assert len(generators) == 1, f"{ks_file}: one ArtifactGenerator beside it, found {len(generators)}"
    return assemble_artifact(root, generators[0], ref["name"], scratch)


def flux_kustomization_file(folder: Path, ks: dict[str, Any]) -> dict[str, Any]:
    """The kustomization file Flux builds ``folder`` with: found or generated, then amended."""
    found = kustomization_file(folder)
    if found is not None:
        data = yaml_documents(found)[0]
    else:
        data = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": generated_resources(folder),
        }
    spec = ks["spec"]
    if "targetNamespace" in spec:
        data["namespace"] = spec["targetNamespace"]
    for key in ("namePrefix", "nameSuffix"):
        if key in spec:
            data[key] = spec[key]
    data["patches"] = [*data.get("patches", []), *spec.get("patches", [])]
    data["components"] = [*data.get("components", []), *spec.get("components", [])]
    images = {i["name"]: i for i in data.get("images", [])}
    images.update({i["name"]: i for i in spec.get("images", [])})
    data["images"] = list(images.values())
    return {k: v for k, v in data.items() if v != []}


def kustomize(folder: Path) -> subprocess.CompletedProcess[str]:
    """``kubectl kustomize`` as kustomize-controller runs it (no load restrictions)."""
    return subprocess.run(
        [KUBECTL, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", FIXTURES)
def test_every_flux_kustomization_builds_with_kubectl_kustomize(name: str, tmp_path: Path) -> None:
    root = copy_fixture(name, tmp_path / "repo")
    built = []
    for index, (ks_file, ks) in enumerate(flux_objects(root, FLUX_KUSTOMIZE)):
        if ks.get("kind") != "Kustomization":
            continue
        source = source_root(root, ks_file, ks, tmp_path / f"artifact-{index}")
        folder = source / ks["spec"].get("path", "./").lstrip("/")
        where = f"{ks_file.relative_to(root)}: Kustomization {ks['metadata']['name']}"
        assert folder.is_dir(), f"{where}: spec.path {ks['spec'].get('path')!r} is no folder"
        original = kustomization_file(folder)
        saved = original.read_bytes() if original is not None else None
        target = original or folder / "kustomization.yaml"
        target.write_text(yaml.safe_dump(flux_kustomization_file(folder, ks)), encoding="utf-8")
        try:
            result = kustomize(folder)
        finally:
            if saved is None:
                target.unlink()
            else:
                target.write_bytes(saved)
        assert result.returncode == 0, f"{where}: kubectl kustomize failed:\n{result.stderr}"
        assert [d for d in yaml.safe_load_all(result.stdout) if d], f"{where}: builds to nothing"
        built.append(ks["metadata"]["name"])
    assert len(built) >= 3, f"only {built} found"


def test_fixtures_are_self_contained_and_offline() -> None:
    for fixture in (REPOS / n for n in FIXTURES if n != THIS):
        assert not (fixture / ".git").exists(), f"{fixture} must be plain files, not a git repository"
        for path in fixture.rglob("*"):
            assert not path.is_symlink(), f"{path}: no symbolic links in fixtures"
        for kfile in fixture.rglob("kustomization.yaml"):
            data = yaml_documents(kfile)[0]
            refs = [*data.get("resources", []), *data.get("components", [])]
            remote = [r for r in refs if "://" in r or r.startswith(("github.com/", "git@"))]
            assert not remote, f"{kfile}: remote references {remote} (fixtures build offline)"


# -- clean repositories ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Tree, Findings]]:
    """Validate a fixture once per module (a fresh copy; this repository in place)."""
    done: dict[str, tuple[Tree, Findings]] = {}

    def get(name: str) -> tuple[Tree, Findings]:
        if name not in done:
            root = REPO if name == THIS else copy_fixture(name, tmp_path_factory.mktemp(name) / "repo")
            done[name] = validate(root)
        return done[name]

    return get


@pytest.mark.parametrize("name", FIXTURES)
def test_clean_repository_has_no_errors(name: str, validated: Callable[[str], tuple[Tree, Findings]]) -> None:
    _, findings = validated(name)
    assert findings.errors == [], listing(findings)


def test_flux2_example_clusters_are_found_from_their_gotk_sync(
    validated: Callable[[str], tuple[Tree, Findings]],
) -> None:
    tree, findings = validated("flux2-example")
    assert kustomization_names(tree) == {
        "production": FLUX2_EXAMPLE_KUSTOMIZATIONS,
        "staging": FLUX2_EXAMPLE_KUSTOMIZATIONS,
    }, listing(findings)


def test_home_ops_cluster_is_found_with_every_ks_yaml(
    validated: Callable[[str], tuple[Tree, Findings]],
) -> None:
    tree, findings = validated("home-ops")
    names = kustomization_names(tree)
    assert list(names.values()) == [HOME_OPS_KUSTOMIZATIONS], f"{names}\n{listing(findings)}"


def test_this_repository_is_found_as_before(validated: Callable[[str], tuple[Tree, Findings]]) -> None:
    tree, findings = validated(THIS)
    lab = sorted([*THIS_REPOSITORY_PHASES, *LAB_COMPONENTS])
    phx = sorted([*THIS_REPOSITORY_PHASES, *PHX_COMPONENTS])
    assert kustomization_names(tree) == {"lab": lab, "phx": phx}, listing(findings)


def test_external_artifact_paths_are_read_inside_the_artifact(
    validated: Callable[[str], tuple[Tree, Findings]],
) -> None:
    tree, findings = validated("flux2-example")
    for cluster, acme in (
        ("staging", "https://acme-staging-v02.api.letsencrypt.org/directory"),
        ("production", "https://acme-v02.api.letsencrypt.org/directory"),
    ):
        podinfo = one(applied(tree, cluster, "apps"), "HelmRelease", "podinfo")
        assert podinfo["spec"]["values"]["httpRoute"]["hostnames"] == [f"podinfo.{cluster}"], listing(
            findings
        )
        issuer = one(applied(tree, cluster, "infra-configs"), "ClusterIssuer", "letsencrypt")
        assert issuer["spec"]["acme"]["server"] == acme  # the Kustomization's own JSON6902 patch
        kinds = sorted(o["kind"] for o in applied(tree, cluster, "infra-controllers"))
        assert kinds.count("HelmRelease") == 2 and "CustomResourceDefinition" in kinds


def test_home_ops_objects_are_what_flux_applies(validated: Callable[[str], tuple[Tree, Findings]]) -> None:
    tree, findings = validated("home-ops")
    (cluster,) = tree.clusters
    echo = one(applied(tree, cluster, "echo"), "HelmRelease", "echo")
    assert echo["metadata"]["namespace"] == "default", listing(findings)  # targetNamespace
    assert echo["metadata"]["labels"]["app.kubernetes.io/name"] == "echo"  # commonMetadata
    assert echo["spec"]["values"]["httpRoute"]["hostnames"] == ["{{ .Release.Name }}.home.example.com"]
    # cluster-apps patches every child Kustomization, whose own patches then reach its HelmReleases
    assert echo["spec"]["install"]["crds"] == "CreateReplace"
    radarr = applied(tree, cluster, "radarr")  # the volsync component with postBuild.substitute
    claim = one(radarr, "PersistentVolumeClaim", "radarr")
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["spec"]["storageClassName"] == "ceph-block" and claim["metadata"]["namespace"] == "default"
    one(radarr, "ReplicationSource", "radarr")
    whoami = applied(tree, cluster, "whoami")  # no kustomization.yaml: Flux generates one
    container = one(whoami, "Deployment", "whoami")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "traefik/whoami:v1.11.0"  # images
    assert container["env"] == [{"name": "TZ", "value": "Europe/Berlin"}]
    certificate = one(applied(tree, cluster, "envoy-gateway"), "Certificate", "home-example.com-production")
    assert certificate["spec"]["dnsNames"] == ["home.example.com", "*.home.example.com"]


def test_kinds_without_a_crd_in_the_repository_are_warnings(
    validated: Callable[[str], tuple[Tree, Findings]],
) -> None:
    for name, kinds in (
        ("flux2-example", ("Gateway", "GatewayClass")),
        ("home-ops", ("HTTPRoute", "ReplicationSource")),
    ):
        _, findings = validated(name)
        assert findings.errors == [], listing(findings)
        for kind in kinds:
            assert any(kind in w.message for w in findings.warnings), f"{name}: no warning for {kind}"


def test_a_component_used_by_many_apps_draws_one_schema_warning_naming_its_objects(tmp_path: Path) -> None:
    """The volsync component's ReplicationSource, built for radarr and a copy of it (sonarr): one warning
    at the component's line, listing both objects, instead of one per app."""
    root = copy_fixture("home-ops", tmp_path / "repo")
    apps = root / "kubernetes/apps/default"
    shutil.copytree(apps / "radarr", apps / "sonarr")
    for path in (apps / "sonarr").rglob("*.yaml"):
        path.write_text(path.read_text(encoding="utf-8").replace("radarr", "sonarr"), encoding="utf-8")
    kustomization = apps / "kustomization.yaml"
    text = kustomization.read_text(encoding="utf-8")
    radarr = "  - ./radarr/ks.yaml\n"
    kustomization.write_text(text.replace(radarr, radarr + radarr.replace("radarr", "sonarr")))
    _, findings = validate(root)
    assert findings.errors == [], listing(findings)
    [hit] = [w for w in findings.warnings if "ReplicationSource" in w.message]
    assert hit.file == "kubernetes/components/volsync/replicationsource.yaml"
    assert "ReplicationSource default/radarr, ReplicationSource default/sonarr:" in hit.message


def test_kinds_whose_crd_is_in_the_repository_are_checked_silently(
    validated: Callable[[str], tuple[Tree, Findings]],
) -> None:
    for name, kind in (("flux2-example", "ClusterIssuer"), ("home-ops", "VolumeSnapshotClass")):
        _, findings = validated(name)
        assert not [f for f in findings.items if kind in f.message], listing(findings)


# -- planted mistakes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """Where a planted mistake is: its file and the lines a finding may point at."""

    file: str
    lines: frozenset[int]


def plant(root: Path, rel: str, old: str, new: str, at: tuple[str, ...] = ()) -> Planted:
    """Replace the one ``old`` in ``rel`` by ``new``; the lines of ``new`` holding any of ``at``
    (every changed line without ``at``) are where the mistake is."""
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {rel}"
    start = text.index(old)
    path.write_text(text[:start] + new + text[start + len(old) :], encoding="utf-8")
    first = text[:start].count("\n") + 1
    old_lines = old.splitlines()
    lines = {
        first + i
        for i, line in enumerate(new.splitlines())
        if (any(a in line for a in at) if at else (i >= len(old_lines) or line != old_lines[i]))
    }
    assert lines, f"nothing planted in {rel}"
    return Planted(rel, frozenset(lines))


SUBSTITUTE_FROM_MISSING = (
    "  postBuild:\n    substituteFrom:\n      - kind: ConfigMap\n        name: cluster-vars\n  prune: true\n"
)


def f2e_depends_on_namespace(root: Path) -> Planted:
    return plant(
        root,
        "clusters/staging/apps.yaml",
        "    - name: infra-configs\n",
        "    - name: infra-configs\n      namespace: infrastructure\n",
        at=("infra-configs", "namespace"),
    )


def f2e_substitute_from_missing(root: Path) -> Planted:
    return plant(
        root,
        "clusters/staging/apps.yaml",
        "  prune: true\n",
        SUBSTITUTE_FROM_MISSING,
        at=("ConfigMap", "cluster-vars"),
    )


def f2e_typo_field(root: Path) -> Planted:
    return plant(
        root, "apps/base/podinfo/release.yaml", "  releaseName: podinfo\n", "  releaseNmae: podinfo\n"
    )


def f2e_crd_schema(root: Path) -> Planted:
    return plant(
        root,
        "infrastructure/configs/cluster-issuers.yaml",
        "    privateKeySecretRef:\n      name: letsencrypt\n",
        "    privateKeySecretRef: letsencrypt\n",
    )


def f2e_missing_path(root: Path) -> Planted:
    return plant(root, "clusters/staging/apps.yaml", "  path: ./staging\n", "  path: ./stagin\n")


def ho_depends_on_namespace(root: Path) -> Planted:
    return plant(
        root,
        "kubernetes/apps/default/radarr/ks.yaml",
        "    - name: snapshot-controller\n      namespace: kube-system\n",
        "    - name: snapshot-controller\n      namespace: flux-system\n",
        at=("snapshot-controller", "namespace"),
    )


def ho_substitute_from_missing(root: Path) -> Planted:
    return plant(
        root,
        "kubernetes/apps/default/echo/ks.yaml",
        "      - name: cluster-settings\n",
        "      - name: cluster-setting\n",
        at=("cluster-setting",),
    )


def ho_typo_field(root: Path) -> Planted:
    return plant(root, "kubernetes/apps/network/envoy-gateway/ks.yaml", "  wait: false\n", "  wiat: false\n")


def ho_typo_in_component(root: Path) -> Planted:
    # the object's name is ${APP}: it is found by its file, not by the name it is applied with
    return plant(
        root, "kubernetes/components/volsync/pvc.yaml", "  storageClassName: ", "  storageClasName: "
    )


def ho_crd_schema(root: Path) -> Planted:
    return plant(
        root,
        "kubernetes/apps/kube-system/snapshot-controller/app/volumesnapshotclass.yaml",
        "deletionPolicy: Delete\n",
        "deletionPolicy: Keep\n",
    )


def ho_missing_path(root: Path) -> Planted:
    return plant(
        root,
        "kubernetes/apps/default/echo/ks.yaml",
        "  path: ./kubernetes/apps/default/echo/app\n",
        "  path: ./kubernetes/apps/default/echo/ap\n",
    )


def this_depends_on_namespace(root: Path) -> Planted:
    return plant(
        root,
        "k8s/clusters/lab/apps.yaml",
        "    - name: infrastructure-config\n",
        "    - name: infrastructure-config\n      namespace: default\n",
        at=("infrastructure-config", "namespace"),
    )


def this_substitute_from_missing(root: Path) -> Planted:
    return plant(
        root,
        "k8s/clusters/lab/apps.yaml",
        "  prune: true\n",
        SUBSTITUTE_FROM_MISSING,
        at=("ConfigMap", "cluster-vars"),
    )


def this_typo_field(root: Path) -> Planted:
    return plant(
        root,
        "k8s/clusters/lab/infrastructure/adguard/deployment.yaml",
        "          imagePullPolicy: IfNotPresent\n",
        "          imagePulPolicy: IfNotPresent\n",
    )


def this_crd_schema(root: Path) -> Planted:
    return plant(
        root,
        "k8s/clusters/lab/infrastructure-config/metallb-config/pool.yaml",
        "  autoAssign: true\n",
        '  autoAssign: "yes"\n',
    )


def this_missing_path(root: Path) -> Planted:
    return plant(
        root,
        "k8s/clusters/lab/apps.yaml",
        "  path: ./k8s/clusters/lab/apps\n",
        "  path: ./k8s/clusters/lab/app\n",
    )


MISTAKES: list[tuple[str, str, Callable[[Path], Planted]]] = [
    ("flux2-example", "dependsOn-namespace", f2e_depends_on_namespace),
    ("flux2-example", "substituteFrom-missing", f2e_substitute_from_missing),
    ("flux2-example", "typo-field", f2e_typo_field),
    ("flux2-example", "crd-schema", f2e_crd_schema),
    ("flux2-example", "missing-path", f2e_missing_path),
    ("home-ops", "dependsOn-namespace", ho_depends_on_namespace),
    ("home-ops", "substituteFrom-missing", ho_substitute_from_missing),
    ("home-ops", "typo-field", ho_typo_field),
    ("home-ops", "typo-in-component", ho_typo_in_component),
    ("home-ops", "crd-schema", ho_crd_schema),
    ("home-ops", "missing-path", ho_missing_path),
    (THIS, "dependsOn-namespace", this_depends_on_namespace),
    (THIS, "substituteFrom-missing", this_substitute_from_missing),
    (THIS, "typo-field", this_typo_field),
    (THIS, "crd-schema", this_crd_schema),
    (THIS, "missing-path", this_missing_path),
]


@pytest.mark.parametrize(("name", "mistake", "planter"), MISTAKES, ids=[f"{n}-{m}" for n, m, _ in MISTAKES])
def test_planted_mistake_is_an_error_at_its_line(
    name: str, mistake: str, planter: Callable[[Path], Planted], tmp_path: Path
) -> None:
    root = copy_fixture(name, tmp_path / "repo")
    planted = planter(root)
    _, findings = validate(root)
    hits = [f for f in findings.errors if f.file == planted.file and f.line in planted.lines]
    assert hits, f"no error at {planted.file}:{sorted(planted.lines)} for {mistake}\n{listing(findings)}"


@pytest.mark.parametrize(
    ("name", "planter"), [("flux2-example", f2e_missing_path), ("home-ops", ho_depends_on_namespace)]
)
def test_fluxops_layout_validate_path_on_a_repository(
    name: str, planter: Callable[[Path], Planted], tmp_path: Path
) -> None:
    """The issue's command, from a folder outside the repository: exit 0 when clean, 1 at file:line."""
    root = copy_fixture(name, tmp_path / "repo")
    command = [FLUXOPS, "layout.validate", "--path", str(root)]
    clean = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    planted = planter(root)
    broken = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    places = [f"{planted.file}:{line}" for line in sorted(planted.lines)]
    assert any(p in broken.stdout + broken.stderr for p in places), broken.stdout + broken.stderr


# -- sources and secrets --------------------------------------------------------------------------


OCI_KUSTOMIZATION = """\
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: cluster-policies
spec:
  interval: 10m
  url: oci://ghcr.io/example/cluster-policies
  ref:
    tag: v1.2.0
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: cluster-policies
spec:
  interval: 1h
  path: ./
  prune: true
  sourceRef:
    kind: OCIRepository
    name: cluster-policies
  wait: false
"""


def test_an_oci_source_is_out_of_reach_offline_as_a_warning(tmp_path: Path) -> None:
    root = copy_fixture("home-ops", tmp_path / "repo")
    (root / "kubernetes/apps/kube-system/cluster-policies").mkdir()
    (root / "kubernetes/apps/kube-system/cluster-policies/ks.yaml").write_text(OCI_KUSTOMIZATION)
    plant(
        root,
        "kubernetes/apps/kube-system/kustomization.yaml",
        "  - ./metrics-server/ks.yaml\n",
        "  - ./cluster-policies/ks.yaml\n  - ./metrics-server/ks.yaml\n",
    )
    _, findings = validate(root)
    assert findings.errors == [], listing(findings)
    oci = [w for w in findings.warnings if "cluster-policies" in w.message and "OCIRepository" in w.message]
    assert oci, listing(findings)
    assert oci[0].file == "kubernetes/apps/kube-system/cluster-policies/ks.yaml"


CLUSTER_SECRETS = """\
apiVersion: v1
kind: Secret
metadata:
  name: cluster-secrets
stringData:
  CLOUDFLARE_TUNNEL_ID: 6e2c1d0e-4f1b-4b8e-9a43-2f2b9e8c7d11
"""


def seal_cluster_secrets(root: Path) -> None:
    """home-ops as it is kept: a SOPS-encrypted cluster-secrets Secret in the common component.

    The age key is made here and thrown away (the checkout holds no encrypted file: its own
    ``secrets.check`` would ask for a creation rule).
    """
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    (root / ".sops.yaml").write_text(
        "creation_rules:\n"
        "  - path_regex: kubernetes/.*\\.sops\\.ya?ml$\n"
        "    encrypted_regex: ^(data|stringData)$\n"
        f"    age: {recipient}\n"
    )
    secret = root / "kubernetes/components/common/cluster-secrets.sops.yaml"
    secret.write_text(Sops(root).encrypt_text(CLUSTER_SECRETS, secret))
    plant(
        root,
        "kubernetes/components/common/kustomization.yaml",
        "  - ./cluster-settings.yaml\n",
        "  - ./cluster-settings.yaml\n  - ./cluster-secrets.sops.yaml\n",
    )
    plant(
        root,
        "kubernetes/apps/default/echo/ks.yaml",
        "        kind: ConfigMap\n",
        "        kind: ConfigMap\n      - name: cluster-secrets\n        kind: Secret\n",
    )


def test_home_ops_with_encrypted_cluster_secrets_has_no_errors(tmp_path: Path) -> None:
    root = copy_fixture("home-ops", tmp_path / "repo")
    seal_cluster_secrets(root)
    tree, findings = validate(root)
    assert findings.errors == [], listing(findings)
    (cluster,) = tree.clusters
    secrets = [o for o in applied(tree, cluster, "cluster-apps") if o.get("kind") == "Secret"]
    assert len(secrets) == 4 and all("sops" in s for s in secrets)  # one per app namespace, encrypted


def test_planted_lines_are_where_the_text_changed(tmp_path: Path) -> None:
    root = copy_fixture("flux2-example", tmp_path / "repo")
    planted = f2e_depends_on_namespace(root)
    lines = (root / planted.file).read_text().splitlines()
    picked = [lines[n - 1].strip() for n in sorted(planted.lines)]
    assert picked == ["- name: infra-configs", "namespace: infrastructure"]
