"""ExternalArtifacts staged as source-watcher stages them, and sources resolved as Flux resolves them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from fluxops.layout.artifacts import ArtifactStore, CopyError, excluded, go_glob
from fluxops.layout.tree import load
from fluxops.layout.validate import validate
from tests.unit.test_flux_build import write
from tests.unit.test_layout_discovery import bootstrapped, config_map, ks

SOURCE = {
    "apps/base/podinfo/kustomization.yaml": "resources:\n  - release.yaml\n",
    "apps/base/podinfo/release.yaml": "kind: HelmRelease\n",
    "apps/base/podinfo/README.md": "notes\n",
    "apps/staging/kustomization.yaml": "resources:\n  - ../base/podinfo\n",
    "apps/staging/values.yaml": "replicas: 1\nimage:\n  tag: a\n",
    "apps/production/values.yaml": "image:\n  tag: b\n",
    "apps/.hidden.yaml": "x: 1\n",
    "apps/.sops.yaml": "creation_rules: []\n",
    "apps/docs/guide.md": "guide\n",
}


def files(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (links followed) and its text."""
    return {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def staged(tmp_path: Path, *copy: dict[str, object]) -> dict[str, str]:
    src = write(tmp_path / "src", SOURCE)
    store = ArtifactStore()
    try:
        artifact = store.stage(("c", "ns", "a"), {"name": "a", "copy": list(copy)}, {"repo": src})
        return files(artifact.folder)
    finally:
        store.close()


def cp(tmp_path: Path, *args: str) -> dict[str, str]:
    """What ``cp -r ARGS... dest/`` copies (the real tool), run in the source folder."""
    src = write(tmp_path / "src", SOURCE)
    dest = tmp_path / "cp"
    dest.mkdir(exist_ok=True)
    subprocess.run(["cp", "-r", *args, str(dest) + "/"], cwd=src, check=True)
    return files(dest)


def test_a_folder_is_copied_as_cp_copies_it(tmp_path: Path) -> None:
    assert staged(tmp_path, {"from": "@repo/apps/base", "to": "@artifact/"}) == cp(tmp_path, "apps/base")
    # a trailing slash on the source changes nothing (the path is cleaned), as with cp
    assert staged(tmp_path, {"from": "@repo/apps/base/", "to": "@artifact/"}) == cp(tmp_path, "apps/base/")


def test_dir_star_star_copies_the_folder_contents_one_level_deep(tmp_path: Path) -> None:
    """Go's fs.Glob: `**` is `*`, so it matches the entries of apps/ (dot files too); each is copied whole."""
    got = staged(tmp_path, {"from": "@repo/apps/**", "to": "@artifact/"})
    want = cp(
        tmp_path, *sorted(str(p.relative_to(tmp_path / "src")) for p in (tmp_path / "src/apps").iterdir())
    )
    del want[".sops.yaml"]  # source-controller leaves .sops.yaml out of every GitRepository artifact
    assert got == want
    assert ".hidden.yaml" in got and "base/podinfo/release.yaml" in got


def test_flux2_example_copy_rules(tmp_path: Path) -> None:
    got = staged(
        tmp_path,
        {"from": "@repo/apps/base/**", "to": "@artifact/base/"},
        {"from": "@repo/apps/staging/**", "to": "@artifact/staging/"},
    )
    assert sorted(got) == [
        "base/podinfo/README.md",
        "base/podinfo/kustomization.yaml",
        "base/podinfo/release.yaml",
        "staging/kustomization.yaml",
        "staging/values.yaml",
    ]


def test_files_go_where_cp_puts_them(tmp_path: Path) -> None:
    one = {"from": "@repo/apps/staging/values.yaml", "to": "@artifact/config/"}
    assert staged(tmp_path, one) == {"config/values.yaml": SOURCE["apps/staging/values.yaml"]}
    renamed = {"from": "@repo/apps/staging/values.yaml", "to": "@artifact/env.yaml"}
    assert staged(tmp_path, renamed) == {"env.yaml": SOURCE["apps/staging/values.yaml"]}
    glob = {"from": "@repo/apps/*/*.yaml", "to": "@artifact/all/"}
    assert sorted(staged(tmp_path, glob)) == [
        "all/apps/production/values.yaml",
        "all/apps/staging/kustomization.yaml",
        "all/apps/staging/values.yaml",
    ]


def test_excludes(tmp_path: Path) -> None:
    deep = staged(tmp_path, {"from": "@repo/apps/base", "to": "@artifact/", "exclude": ["**/*.md"]})
    assert sorted(deep) == ["base/podinfo/kustomization.yaml", "base/podinfo/release.yaml"]
    # source-watcher v2.0 matches a pattern against the whole path: `*.md` stays in one segment
    shallow = staged(tmp_path, {"from": "@repo/apps/base", "to": "@artifact/", "exclude": ["*.md"]})
    assert "base/podinfo/README.md" in shallow
    glob = staged(
        tmp_path, {"from": "@repo/apps/**", "to": "@artifact/", "exclude": ["apps/{docs,production}"]}
    )
    assert not any(f.startswith(("docs/", "production/")) for f in glob) and "staging/values.yaml" in glob
    assert (
        excluded("a/b/c.md", ["a/**"]) and excluded("c.md", ["**/*.md"]) and not excluded("a/c.md", ["*.md"])
    )


def test_merge_strategy_deep_merges_yaml(tmp_path: Path) -> None:
    got = staged(
        tmp_path,
        {"from": "@repo/apps/staging/values.yaml", "to": "@artifact/values.yaml"},
        {"from": "@repo/apps/production/values.yaml", "to": "@artifact/values.yaml", "strategy": "Merge"},
    )
    assert yaml.safe_load(got["values.yaml"]) == {"replicas": 1, "image": {"tag": "b"}}
    overwrite = staged(
        tmp_path,
        {"from": "@repo/apps/staging/values.yaml", "to": "@artifact/values.yaml"},
        {"from": "@repo/apps/production/values.yaml", "to": "@artifact/values.yaml"},
    )
    assert yaml.safe_load(overwrite["values.yaml"]) == {"image": {"tag": "b"}}


@pytest.mark.parametrize(
    ("op", "words"),
    [
        ({"from": "@repo/nothing/**", "to": "@artifact/"}, "no files match pattern 'nothing/**'"),
        ({"from": "@repo/apps/docs/*", "to": "@artifact/", "exclude": ["**"]}, "were excluded"),
        ({"from": "@repo/gone", "to": "@artifact/"}, "source 'gone' does not exist"),
        ({"from": "@other/apps", "to": "@artifact/"}, "source alias 'other' not found"),
        ({"from": "repo/apps", "to": "@artifact/"}, "source must start with '@'"),
        ({"from": "@repo", "to": "@artifact/"}, "source format must be '@alias/pattern'"),
        ({"from": "@repo/apps", "to": "/tmp/"}, "destination must start with '@artifact/'"),
        ({"from": "@repo/../etc", "to": "@artifact/"}, "outside the source"),
        ({"from": "@repo/apps/*", "to": "@artifact/", "exclude": ["[a"]}, "invalid exclude pattern"),
    ],
)
def test_copy_errors(tmp_path: Path, op: dict[str, object], words: str) -> None:
    with pytest.raises(CopyError, match=r"failed to apply copy operation from .*: ") as exc:
        staged(tmp_path, op)
    assert words in str(exc.value)


def test_go_glob_matches_one_segment_per_star(tmp_path: Path) -> None:
    src = write(tmp_path / "src", SOURCE)
    assert go_glob(src, "apps/*") == go_glob(src, "apps/**")
    assert go_glob(src, "apps/[bs]*/kustomization.yaml") == ["apps/staging/kustomization.yaml"]
    assert go_glob(src, "apps/?taging") == ["apps/staging"] and go_glob(src, "apps/[^s]*") == [
        "apps/.hidden.yaml",
        "apps/base",
        "apps/docs",
        "apps/production",
    ]


GENERATOR = """\
apiVersion: source.extensions.fluxcd.io/v1beta1
kind: ArtifactGenerator
metadata:
  name: flux-system
  namespace: flux-system
spec:
  sources:
    - alias: repo
      kind: GitRepository
      name: flux-system
  artifacts:
    - name: apps
      copy:
        - from: "@repo/apps/base/**"
          to: "@artifact/base/"
        - from: "@repo/apps/staging/**"
          to: "@artifact/staging/"
"""

ARTIFACT_KS = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  interval: 1h
  path: ./staging
  prune: true
  sourceRef:
    kind: ExternalArtifact
    name: apps
"""


def artifact_repo(root: Path) -> Path:
    cluster = bootstrapped(root, "staging")
    del cluster["clusters/staging/apps.yaml"], cluster["apps/kustomization.yaml"], cluster["apps/cm.yaml"]
    return write(
        root,
        {
            **cluster,
            "clusters/staging/artifacts.yaml": GENERATOR,
            "clusters/staging/apps.yaml": ARTIFACT_KS,
            "clusters/staging/flux-system/kustomization.yaml": "resources:\n  - gotk-sync.yaml\n",
            "apps/base/podinfo/kustomization.yaml": "resources:\n  - cm.yaml\n",
            "apps/base/podinfo/cm.yaml": config_map("podinfo"),
            "apps/staging/kustomization.yaml": "resources:\n  - ../base/podinfo\n",
        },
    )


def test_a_kustomization_builds_inside_its_external_artifact(tmp_path: Path) -> None:
    root = artifact_repo(tmp_path)
    tree = load(root, cache=False)
    [apps] = tree.clusters["staging"].phases
    assert [o["metadata"]["name"] for o in apps.objects] == ["podinfo"]
    assert tree.sources_of[("staging", "flux-system", "apps")].label.startswith(
        "ExternalArtifact flux-system/apps"
    )
    assert tree.findings.errors == []
    # the staged copy is gone once loaded; its paths still read as the source's
    assert not apps.folder.exists()
    assert tree.rel(apps.folder) == "apps/staging" and "apps/staging/" in tree.scope()


def test_what_the_artifact_does_not_copy_is_not_there(tmp_path: Path) -> None:
    root = artifact_repo(tmp_path)
    write(root, {"apps/shared/cm.yaml": config_map("shared")})
    write(
        root, {"apps/staging/kustomization.yaml": "resources:\n  - ../base/podinfo\n  - ../shared/cm.yaml\n"}
    )
    assert (root / "apps/shared/cm.yaml").is_file()
    errors = validate(root, cache=False)[1].errors
    assert [e.code for e in errors] == ["path-missing"], errors
    assert (errors[0].file, errors[0].line) == ("apps/staging/kustomization.yaml", 3)


def test_a_generator_that_copies_nothing_is_an_error_at_the_source_ref(tmp_path: Path) -> None:
    root = artifact_repo(tmp_path)
    write(root, {"clusters/staging/artifacts.yaml": GENERATOR.replace("apps/staging/**", "apps/stagin/**")})
    [error] = validate(root, cache=False)[1].errors
    assert (error.code, error.file, error.line) == ("source-missing", "clusters/staging/apps.yaml", 10)
    assert "no files match pattern 'apps/stagin/**'" in error.message


def test_sources_flux_cannot_reach_offline_are_warnings(tmp_path: Path) -> None:
    files = bootstrapped(tmp_path, "staging")
    other = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: {n}\n" + (
        "  namespace: flux-system\nspec:\n  interval: 1m\n  url: {url}\n"
    )
    files["clusters/staging/sources.yaml"] = (
        other.format(n="elsewhere", url="https://example.com/other.git")
        + "---\n"
        + other.format(n="mirror", url="ssh://git@example.com/me/fleet.git")
    )
    files["clusters/staging/more.yaml"] = (
        ks("other", "./deploy", "elsewhere") + "---\n" + ks("mine", "./apps", "mirror")
    )
    files["clusters/staging/gone.yaml"] = ks("gone", "./apps", "nowhere")
    write(tmp_path, files)
    tree, findings = validate(tmp_path, cache=False)
    phases = {p.name: p for p in tree.clusters["staging"].phases}
    assert phases["mine"].objects and not phases["other"].objects
    [warning] = [f for f in findings.warnings if f.code == "source-offline"]
    assert (
        warning.phase == "other"
        and "GitRepository flux-system/elsewhere (https://example.com/other.git)" in (warning.message)
    )
    [error] = findings.errors
    assert (error.code, error.phase, error.file) == ("source-missing", "gone", "clusters/staging/gone.yaml")
    assert "GitRepository flux-system/nowhere is defined nowhere" in error.message


def test_a_chart_from_a_generated_artifact_has_its_source(tmp_path: Path) -> None:
    root = artifact_repo(tmp_path)
    release = (
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: podinfo\n"
        "  namespace: flux-system\nspec:\n  interval: 1h\n  chartRef:\n    kind: ExternalArtifact\n"
        "    name: {name}\n"
    )
    write(root, {"apps/base/podinfo/release.yaml": release.format(name="apps")})
    write(root, {"apps/base/podinfo/kustomization.yaml": "resources:\n  - cm.yaml\n  - release.yaml\n"})
    assert validate(root, cache=False)[1].errors == []
    write(root, {"apps/base/podinfo/release.yaml": release.format(name="charts")})
    [error] = validate(root, cache=False)[1].errors
    assert (error.code, error.file, error.line) == ("chart-source", "apps/base/podinfo/release.yaml", 8)
    assert "ExternalArtifact flux-system/charts" in error.message
