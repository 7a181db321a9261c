"""layout.validate against the shipped tree and a table of broken copies of it (real kustomize)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fluxops.errors import LayoutError
from fluxops.layout import report
from fluxops.layout.findings import Finding
from fluxops.layout.validate import validate
from fluxops.secrets.sops import Sops
from fluxops.settings import LayoutSettings, repository_layout
from tests.layout_fixtures import REPO, THIS_REPO, copy_tree, pristine_root

FLUX_ONLY = LayoutSettings()  # Flux's own rules, no policy


@pytest.fixture
def pristine() -> Path:
    """The shared, validated copy of the shipped tree (do not change it)."""
    return pristine_root()


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """A fresh copy of the pristine tree (with its cache) to break."""
    return copy_tree(tmp_path / "repo")


def edit(root: Path, rel: str, old: str, new: str) -> None:
    """Replace text in a tree file; the old text must be there (so the test notices tree changes)."""
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def write(root: Path, rel: str, text: str) -> None:
    """Create a file in the tree."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def errors(root: Path, cluster: str | None = None, layout: LayoutSettings = THIS_REPO) -> list[Finding]:
    """The error findings of validating ``root`` (with this repository's policy unless told)."""
    return validate(root, cluster, layout=layout)[1].errors


def test_shipped_tree_validates() -> None:
    assert repository_layout(REPO) == THIS_REPO
    tree, findings = validate(REPO)  # this repository's invoke.yaml: its policy, clusters under k8s/
    assert findings.errors == [], report.text(tree, findings)
    assert not [f for f in findings.warnings if f.code != "unused"], report.text(tree, findings)
    assert set(tree.clusters) >= {"lab", "phx"}
    for cluster in tree.clusters.values():
        names = {p.name for p in cluster.phases}
        assert {"crds", "infrastructure", "storage", "infrastructure-config", "apps"} <= names
        assert all(p.objects for p in cluster.phases if p.name != "apps")


def test_pristine_copy_validates(pristine: Path) -> None:
    assert errors(pristine) == []


def test_cached_run_uses_the_cache(pristine: Path) -> None:
    tree, _ = validate(pristine, layout=THIS_REPO)
    assert tree.builds and all(b.cached for b in tree.builds.values())


def test_unknown_cluster_is_refused(pristine: Path) -> None:
    with pytest.raises(LayoutError, match=r"unknown cluster 'nope'.*lab"):
        validate(pristine, "nope")


def test_no_tree_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=r"no Flux cluster found in .*entry Kustomization.*flux-system"):
        validate(tmp_path)


def _missing_base(root: Path) -> None:
    edit(
        root,
        "k8s/clusters/lab/infrastructure/metallb/kustomization.yaml",
        "base/infrastructure/metallb",
        "base/gone",
    )


def _depends_on_nothing(root: Path) -> None:
    edit(root, "k8s/clusters/lab/apps.yaml", "- name: infrastructure-config", "- name: infra-config")


def _cycle(root: Path) -> None:
    edit(root, "k8s/clusters/lab/crds.yaml", "spec:\n", "spec:\n  dependsOn:\n    - name: apps\n")


def _cr_before_crd(root: Path) -> None:
    write(
        root,
        "k8s/clusters/lab/extras.yaml",
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: extras\n"
        "  namespace: flux-system\nspec:\n  interval: 1h\n  prune: true\n  path: ./k8s/clusters/lab/extras\n"
        "  sourceRef:\n    kind: GitRepository\n    name: flux-system\n",
    )
    write(
        root,
        "k8s/clusters/lab/extras/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - pool.yaml\n",
    )
    write(
        root,
        "k8s/clusters/lab/extras/pool.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: extra\n"
        "  namespace: metallb-system\nspec:\n  addresses:\n    - 192.168.8.230/32\n",
    )
    edit(root, "k8s/clusters/lab/kustomization.yaml", "  - apps.yaml\n", "  - apps.yaml\n  - extras.yaml\n")


def _plaintext_secret(root: Path) -> None:
    write(
        root,
        "k8s/clusters/lab/apps/leak.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: leak\n  namespace: default\n"
        "stringData:\n  password: hunter2\n",
    )
    edit(root, "k8s/clusters/lab/apps/kustomization.yaml", "resources:\n", "resources:\n  - leak.yaml\n")


def _unencrypted_sops(root: Path) -> None:
    write(
        root,
        "k8s/clusters/lab/infrastructure-config/twingate/secret.sops.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: twingate-connector\n  namespace: twingate\n"
        "stringData:\n  access-token: plain\n",
    )


def _truncated_sops(root: Path) -> None:
    path = root / "k8s/clusters/lab/apps/pocket-id/secret.sops.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("sops:")], encoding="utf-8")


def _invalid_yaml(root: Path) -> None:
    write(root, "k8s/clusters/lab/infrastructure/traefik/values.yaml", "ports:\n  web: [80\nlogs: {}\n")


def _no_helm_repository(root: Path) -> None:
    edit(root, "k8s/base/infrastructure/traefik/kustomization.yaml", "  - helmrepo.yaml\n", "")
    (root / "k8s/base/infrastructure/traefik/helmrepo.yaml").unlink()


def _wrong_flux_api_version(root: Path) -> None:
    edit(
        root,
        "k8s/clusters/lab/storage.yaml",
        "kustomize.toolkit.fluxcd.io/v1\n",
        "kustomize.toolkit.fluxcd.io/v1beta9\n",
    )


def _wrong_core_api_version(root: Path) -> None:
    edit(root, "k8s/clusters/lab/infrastructure-config/twingate/deployment.yaml", "apps/v1", "apps/v1beta9")


def _legacy_folder(root: Path) -> None:
    write(root, "k8s/infrastructure/storage/kustomization.yaml", "resources: []\n")


def _no_decryption(root: Path) -> None:
    path = root / "k8s/clusters/lab/infrastructure-config/twingate/ks.yaml"
    text = path.read_text(encoding="utf-8")
    assert "decryption:" in text
    path.write_text(text.split("  decryption:")[0], encoding="utf-8")


def _not_waiting(root: Path) -> None:
    edit(root, "k8s/clusters/lab/storage.yaml", "wait: true", "wait: false")


def _unknown_field(root: Path) -> None:
    edit(
        root,
        "k8s/base/infrastructure/traefik/helmrelease.yaml",
        "  interval:",
        "  intervall: 5m\n  interval:",
    )


def _missing_phase_path(root: Path) -> None:
    edit(root, "k8s/clusters/phx/apps.yaml", "./k8s/clusters/phx/apps", "./k8s/clusters/phx/aps")


def _missing_source(root: Path) -> None:
    edit(root, "k8s/clusters/lab/apps.yaml", "name: flux-system\n  path", "name: elsewhere\n  path")


BROKEN: list[tuple[str, Callable[[Path], None], str, str, str]] = [
    # (case, break the tree, finding code, file the finding names, words in the message)
    (
        "missing base path",
        _missing_base,
        "path-missing",
        "lab/infrastructure/metallb/kustomization.yaml",
        "base/gone",
    ),
    ("dependsOn to nothing", _depends_on_nothing, "depends-on-missing", "lab/apps.yaml", "infra-config"),
    ("dependsOn cycle", _cycle, "depends-on-cycle", "lab/", "crds"),
    ("CR before its CRD", _cr_before_crd, "crd-order", "lab/extras/pool.yaml", "IPAddressPool"),
    ("plaintext Secret", _plaintext_secret, "plaintext-secret", "lab/apps/leak.yaml", "leak"),
    (
        "unencrypted sops file",
        _unencrypted_sops,
        "sops-unencrypted",
        "twingate/secret.sops.yaml",
        "no sops metadata",
    ),
    (
        "truncated sops file",
        _truncated_sops,
        "secret-damaged",
        "pocket-id/secret.sops.yaml",
        "restore it from git",
    ),
    ("invalid YAML", _invalid_yaml, "yaml", "lab/infrastructure/traefik/values.yaml", "does not parse"),
    (
        "HelmRepository missing",
        _no_helm_repository,
        "chart-source",
        "base/infrastructure/traefik/helmrelease.yaml",
        "HelmRepository",
    ),
    ("Flux apiVersion", _wrong_flux_api_version, "api-version", "lab/storage.yaml", "v1beta9"),
    ("core apiVersion", _wrong_core_api_version, "api-version", "twingate/deployment.yaml", "apps/v1beta9"),
    ("legacy folder", _legacy_folder, "no-legacy-folders", "k8s/infrastructure", "legacy"),
    (
        "no decryption",
        _no_decryption,
        "decryption-missing",
        "lab/infrastructure-config/twingate/ks.yaml",
        "decryption",
    ),
    ("phase not waiting", _not_waiting, "wait-blocking", "lab/storage.yaml", "wait: true"),
    (
        "unknown Flux field",
        _unknown_field,
        "schema",
        "base/infrastructure/traefik/helmrelease.yaml",
        "intervall",
    ),
    (
        "missing source",
        _missing_source,
        "source-missing",
        "lab/apps.yaml",
        "GitRepository flux-system/elsewhere",
    ),
    ("missing phase path", _missing_phase_path, "path-missing", "phx/apps.yaml", "phx/aps"),
]


@pytest.mark.parametrize(("case", "breaker", "code", "file", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_tree_is_caught(
    tree_copy: Path, case: str, breaker: Callable[[Path], None], code: str, file: str, words: str
) -> None:
    breaker(tree_copy)
    found = errors(tree_copy)
    hits = [f for f in found if f.code == code and file in f.file and words in f.message]
    assert hits, f"{case}: no {code} error in {file} mentioning {words!r}; got:\n" + "\n".join(
        f"{f.code} {f.where} {f.message}" for f in found
    )
    assert all(f.line for f in hits if f.code not in ("no-legacy-folders",)), hits


def test_line_numbers_point_at_the_cause(tree_copy: Path) -> None:
    _depends_on_nothing(tree_copy)
    hit = next(f for f in errors(tree_copy) if f.code == "depends-on-missing")
    line = (tree_copy / hit.file).read_text(encoding="utf-8").splitlines()[hit.line - 1]
    assert "infra-config" in line


def test_invalid_yaml_line(tree_copy: Path) -> None:
    _invalid_yaml(tree_copy)
    hit = next(f for f in errors(tree_copy) if f.code == "yaml")
    assert hit.line in (2, 3)


def test_cycle_names_every_phase(tree_copy: Path) -> None:
    _cycle(tree_copy)
    hit = next(f for f in errors(tree_copy) if f.code == "depends-on-cycle")
    for phase in ("crds", "infrastructure", "infrastructure-config", "apps"):
        assert phase in hit.message
    assert hit.cluster == "lab"


def test_cluster_filter_ignores_other_clusters(tree_copy: Path) -> None:
    _depends_on_nothing(tree_copy)
    assert errors(tree_copy, "phx") == []
    assert errors(tree_copy, "lab")


def test_json_report(tree_copy: Path) -> None:
    import json

    _depends_on_nothing(tree_copy)
    tree, findings = validate(tree_copy)
    data = json.loads(report.as_json(tree, findings))
    assert data["ok"] is False and data["errors"] == len(findings.errors)
    assert any(f["code"] == "depends-on-missing" and f["cluster"] == "lab" for f in data["findings"])
    assert data["clusters"]["lab"]["phases"][0]["name"] == "crds"


def test_text_report_groups_by_cluster_and_phase(tree_copy: Path) -> None:
    _not_waiting(tree_copy)
    tree, findings = validate(tree_copy, layout=THIS_REPO)
    text = report.text(tree, findings)
    lines = text.splitlines()
    assert "cluster lab" in lines
    assert lines.index("  phase storage") > lines.index("cluster lab")
    assert text.splitlines()[-1].startswith("FAILED")


def test_edit_invalidates_the_cache(tree_copy: Path) -> None:
    pool = "k8s/clusters/lab/infrastructure-config/metallb-config/pool.yaml"
    edit(tree_copy, pool, "name: lan", "name: lan2")
    tree, _ = validate(tree_copy)
    names = [
        o["metadata"]["name"]
        for p in tree.clusters["lab"].phases
        for o in p.objects
        if o.get("kind") == "IPAddressPool"
    ]
    assert "lan2" in names


def test_secret_value_sops_leaves_in_clear_validates(tree_copy: Path) -> None:
    """sops leaves empty strings unencrypted; such a value is not a plaintext value."""
    path = tree_copy / "k8s/clusters/lab/apps/pocket-id/secret.sops.yaml"
    plaintext = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: pocket-id\n  namespace: pocket-id\n"
        'type: Opaque\nstringData:\n  encryption-key: REPLACE_ME\n  previous-key: ""\n'
    )
    # encrypted to the rule's (placeholder) public key: no private key needed
    path.write_text(Sops(tree_copy).encrypt_text(plaintext, path), encoding="utf-8")
    assert 'previous-key: ""' in path.read_text(encoding="utf-8")
    assert errors(tree_copy) == []


POLICY_ONLY = [b for b in BROKEN if b[2] in ("no-legacy-folders", "wait-blocking")]


@pytest.mark.parametrize(
    ("case", "breaker", "code", "file", "words"), POLICY_ONLY, ids=[b[0] for b in POLICY_ONLY]
)
def test_policy_rules_are_off_without_the_policy(
    tree_copy: Path, case: str, breaker: Callable[[Path], None], code: str, file: str, words: str
) -> None:
    breaker(tree_copy)
    assert errors(tree_copy, layout=FLUX_ONLY) == []
    found = [f for f in errors(tree_copy) if f.code == code]
    assert found and all(f.message.endswith("(policy fluxops-phases)") for f in found), found


def test_cr_before_its_crd_is_a_warning_under_flux_rules(tree_copy: Path) -> None:
    _cr_before_crd(tree_copy)
    _, findings = validate(tree_copy, layout=FLUX_ONLY)
    assert not [f for f in findings.errors if f.code == "crd-order"]
    [warning] = [f for f in findings.warnings if f.code == "crd-order"]
    assert "Flux retries until the CRD exists" in warning.message and "add dependsOn crds" in warning.message
    assert (warning.file, warning.line) == ("k8s/clusters/lab/extras/pool.yaml", 1)
    [error] = [f for f in errors(tree_copy) if f.code == "crd-order"]
    assert error.message.endswith("(policy fluxops-phases)") and error.file == warning.file


def test_depends_on_compares_namespaces(tree_copy: Path) -> None:
    edit(
        tree_copy,
        "k8s/clusters/lab/apps.yaml",
        "    - name: infrastructure-config\n",
        "    - name: infrastructure-config\n      namespace: default\n",
    )
    [hit] = [f for f in errors(tree_copy, layout=FLUX_ONLY) if f.code == "depends-on-missing"]
    assert "dependsOn default/infrastructure-config" in hit.message, hit
    assert "there is one in namespace flux-system: set namespace: flux-system" in hit.message
    line = (tree_copy / hit.file).read_text(encoding="utf-8").splitlines()[hit.line - 1]
    assert line.strip() == "- name: infrastructure-config"
    edit(tree_copy, "k8s/clusters/lab/apps.yaml", "namespace: default\n", "namespace: flux-system\n")
    assert errors(tree_copy, layout=FLUX_ONLY) == []


def test_unknown_policy_is_refused(pristine: Path) -> None:
    with pytest.raises(LayoutError, match=r"unknown layout policy 'strict'.*fluxops-phases"):
        validate(pristine, layout=LayoutSettings(policy="strict"))


def test_cold_validation_reports_progress(tree_copy: Path) -> None:
    calls: list[tuple[int, int]] = []
    tree, _ = validate(tree_copy, cache=False, layout=THIS_REPO, progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert done == list(range(1, len(calls) + 1)), calls
    assert all(d <= t for d, t in calls) and calls[-1] == (len(tree.builds), len(tree.builds)), calls
