"""layout.tree and the invoke tasks, run as a user runs them (real invoke, kustomize and Graphviz)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from fluxops.layout import dot
from fluxops.layout.tree import load
from fluxops.shell import local
from tests.layout_fixtures import REPO, pristine_root

INVOKE = [sys.executable, "-m", "invoke"]


def test_text_shows_phases_in_order_with_what_they_install() -> None:
    cluster = load(pristine_root(), "lab").clusters["lab"]
    text = dot.text(cluster)
    lines = text.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if line.startswith(f"  {name} "))
        for name in ("crds", "infrastructure", "storage", "infrastructure-config", "apps")
    ]
    assert order == sorted(order)
    assert "dependsOn: infrastructure, storage" in text
    assert "HelmRelease: external-dns, metallb, traefik" in text
    assert "CRDs: metallb.io" in text


def test_dot_parses_with_graphviz(tmp_path: Path) -> None:
    assert shutil.which("dot"), "Graphviz dot is missing: scripts/setup.sh installs it"
    cluster = load(pristine_root(), "phx").clusters["phx"]
    source = dot.dot(cluster)
    assert '"infrastructure-config" -> "infrastructure";' in source
    assert '"apps" [label="apps (no wait)' in source
    result = local().run(["dot", "-Tsvg"], stdin=source, timeout=30)
    assert "<svg" in result.stdout


def test_missing_dependency_is_drawn_red() -> None:
    cluster = load(pristine_root(), "lab").clusters["lab"]
    phase = cluster.phase("apps")
    assert phase is not None
    phase.obj["spec"]["dependsOn"] = [{"name": "nowhere"}]
    assert '"apps" -> "nowhere" [color=red, label=missing];' in dot.dot(cluster)


def test_invoke_list_shows_layout_tasks() -> None:
    out = local().run([*INVOKE, "--list"], cwd=REPO, timeout=60).stdout
    for name in ("layout.validate", "layout.tree", "layout.new-cluster", "layout.audit"):
        assert name in out


def test_invoke_validate_json() -> None:
    result = local().run([*INVOKE, "layout.validate", "--json"], cwd=REPO, timeout=300)
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["errors"] == 0
    assert {"lab", "phx"} <= set(data["clusters"])


def test_invoke_validate_unknown_cluster_exits_with_a_message() -> None:
    result = local().run([*INVOKE, "layout.validate", "--cluster", "nope"], cwd=REPO, timeout=60, check=False)
    assert result.rc == 1
    assert "unknown cluster 'nope'" in result.stderr and "lab" in result.stderr


def test_invoke_tree_writes_dot(tmp_path: Path) -> None:
    target = tmp_path / "lab.dot"
    result = local().run(
        [*INVOKE, "layout.tree", "--cluster", "lab", "--dot", str(target)], cwd=REPO, timeout=120
    )
    assert "cluster lab" in result.stdout
    assert target.read_text(encoding="utf-8").startswith('digraph "flux-lab"')


def test_invoke_new_cluster_refuses_existing_name() -> None:
    result = local().run([*INVOKE, "layout.new-cluster", "phx"], cwd=REPO, timeout=60, check=False)
    assert result.rc == 1 and "already exists" in result.stderr
