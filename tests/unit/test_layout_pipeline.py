"""How load() schedules builds: Kustomizations revealed by a build are built in the same pass, a
phase waiting for another's object is retried, folders are built once (real kustomize as oracle).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxops.layout.kustomize import BUILD_FLAGS, kubectl
from fluxops.layout.tree import load
from tests.unit.test_flux_build import write
from tests.unit.test_layout_discovery import bootstrapped, config_map, ks

KUSTOMIZE = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"


def resources(*names: str) -> str:
    return KUSTOMIZE + "resources:\n" + "".join(f"  - {n}\n" for n in names)


def kustomize(folder: Path) -> subprocess.CompletedProcess[str]:
    """The real ``kubectl kustomize`` of ``folder``."""
    return subprocess.run(
        [kubectl(), "kustomize", *BUILD_FLAGS, str(folder)], capture_output=True, text=True, check=False
    )


def oracle(folder: Path) -> list[dict[str, Any]]:
    built = kustomize(folder)
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


def nested(root: Path) -> Path:
    """clusters/prod applies ``apps``, which applies ``infra`` and ``web``; ``infra`` applies ``deep``."""
    files = bootstrapped(root, "prod")
    files.update(
        {
            "apps/kustomization.yaml": resources("infra.yaml", "web.yaml"),
            "apps/infra.yaml": ks("infra", "./infra"),
            "apps/web.yaml": ks("web", "./web", extra="  targetNamespace: web\n"),
            "infra/kustomization.yaml": resources("deep.yaml", "cm.yaml"),
            "infra/deep.yaml": ks("deep", "./deep"),
            "infra/cm.yaml": config_map("infra-settings"),
            "web/kustomization.yaml": resources("cm.yaml"),
            "web/cm.yaml": config_map("web-settings"),
            "deep/kustomization.yaml": resources("cm.yaml"),
            "deep/cm.yaml": config_map("deep-settings", "deep"),
        }
    )
    return write(root, files)


def test_kustomizations_revealed_by_builds_are_built_and_found(tmp_path: Path) -> None:
    root = nested(tmp_path)
    calls: list[tuple[int, int]] = []
    tree = load(root, cache=False, progress=lambda done, total: calls.append((done, total)))
    cluster = tree.clusters["prod"]
    assert [p.name for p in cluster.phases] == ["apps", "infra", "web", "deep"]  # in the order found
    assert all(p.built for p in cluster.phases)
    phases = {p.name: p for p in cluster.phases}
    for name in ("apps", "infra", "deep"):  # Flux builds these folders as they are
        assert phases[name].objects == oracle(root / name), name
    (web,) = phases["web"].objects
    assert web["metadata"] == {"name": "web-settings", "namespace": "web"}  # targetNamespace applied
    assert tree.findings.errors == []
    # every build reported once, the total never below what is done, and the last call says all is done
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1))
    assert all(d <= t for d, t in calls) and [t for _, t in calls] == sorted(t for _, t in calls)
    assert calls[-1] == (len(tree.builds), len(tree.builds)) == (5, 5)  # the cluster folder, 4 phases


def test_a_phase_waiting_for_an_object_a_later_phase_applies_is_built_after_it(tmp_path: Path) -> None:
    files = bootstrapped(tmp_path, "prod")
    substitute_from = (
        "  postBuild:\n    substituteFrom:\n      - kind: ConfigMap\n        name: generated-vars\n"
    )
    files.update(
        {
            "apps/kustomization.yaml": resources("app.yaml", "vars.yaml"),
            "apps/app.yaml": ks("app", "./app", extra=substitute_from),
            "apps/vars.yaml": ks("vars", "./vars"),
            "app/kustomization.yaml": resources("cm.yaml"),
            "app/cm.yaml": config_map("app").replace("k: v", "k: ${COLOR}"),
            # the ConfigMap exists in no file: only the build of vars makes it
            "vars/kustomization.yaml": KUSTOMIZE
            + "configMapGenerator:\n  - name: generated-vars\n    namespace: flux-system\n"
            + "    literals: [COLOR=blue]\n    options:\n      disableNameSuffixHash: true\n",
        }
    )
    tree = load(write(tmp_path, files), cache=False)
    phases = {p.name: p for p in tree.clusters["prod"].phases}
    assert tree.findings.errors == []
    assert phases["app"].built and phases["app"].objects[0]["data"] == {"k": "blue"}


def test_a_folder_a_flux_overlay_reads_is_not_built_again(tmp_path: Path) -> None:
    files = bootstrapped(tmp_path, "prod")
    files.update(
        {
            "apps/kustomization.yaml": resources("../base", "extra.yaml"),
            "apps/extra.yaml": config_map("extra"),
            "base/kustomization.yaml": resources("cm.yaml"),
            "base/cm.yaml": config_map("base"),
            "clusters/prod/apps.yaml": ks("apps", "./apps", extra="  targetNamespace: shop\n"),
        }
    )
    tree = load(write(tmp_path, files), cache=False)
    base = (tmp_path / "base").resolve()
    assert base in tree.folders  # read by the build of apps...
    assert base not in tree.builds  # ...and not built on its own
    (phase,) = tree.clusters["prod"].phases
    assert sorted(o["metadata"]["name"] for o in phase.objects) == ["base", "extra"]
    assert tree.findings.errors == []


def test_a_failed_build_is_reported_at_the_folder_where_it_fails(tmp_path: Path) -> None:
    files = bootstrapped(tmp_path, "prod")
    patch = "patches:\n  - patch: |-\n      apiVersion: apps/v1\n      kind: Deployment\n"
    files.update(
        {
            "apps/kustomization.yaml": resources("../base"),
            "base/kustomization.yaml": resources("cm.yaml") + patch + "      metadata:\n        name: gone\n",
            "base/cm.yaml": config_map("base"),
            "clusters/prod/apps.yaml": ks("apps", "./apps", extra="  targetNamespace: shop\n"),
        }
    )
    root = write(tmp_path, files)
    assert kustomize(root / "base").returncode != 0  # kustomize itself refuses base
    tree = load(root, cache=False)
    builds = [(f.code, f.file) for f in tree.findings.errors]
    assert builds == [("build", "base/kustomization.yaml")]  # not at the apps Kustomization too
    assert not tree.builds[(root / "base").resolve()].ok


def test_shadow_trees_go_to_memory_unless_tmpdir_says_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fluxops.layout import overlay

    monkeypatch.delenv("TMPDIR", raising=False)
    shm_usable = os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK)
    assert overlay._scratch() == ("/dev/shm" if shm_usable else None)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile reads TMPDIR again
    assert overlay._scratch() is None  # tempfile then takes TMPDIR, as it does everywhere else
    source = tmp_path / "repo"
    (source / "app").mkdir(parents=True)
    (source / "app" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    made = overlay.Overlay(root=source, folder=source / "app", filename="kustomization.yaml", text="{}")
    with overlay.shadow_tree(made) as (top, _):
        assert top.parent == tmp_path
    assert not top.exists()
