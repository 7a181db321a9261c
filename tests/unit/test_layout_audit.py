"""layout.audit: a planted duplicate is found, and --apply moves it to base without changing any build."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxops.layout import audit
from fluxops.layout.validate import validate
from tests.layout_fixtures import copy_tree

PLANTED = """\
# A priority class both clusters carry (planted duplicate).
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: infra-critical
value: {value}
globalDefault: false
description: Infrastructure that must keep running
preemptionPolicy: PreemptLowerPriority
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_tree(tmp_path / "repo")


def plant(repo: Path) -> None:
    for cluster, value in (("lab", 1000000), ("phx", 900000)):
        folder = repo / f"k8s/clusters/{cluster}/infrastructure-config"
        (folder / "priority.yaml").write_text(PLANTED.format(value=value), encoding="utf-8")
        kfile = folder / "kustomization.yaml"
        text = kfile.read_text(encoding="utf-8")
        assert "resources:\n" in text
        kfile.write_text(text.replace("resources:\n", "resources:\n  - priority.yaml\n", 1), encoding="utf-8")


def test_finds_planted_duplicate(repo: Path) -> None:
    plant(repo)
    dups = {d.label: d for d in audit.find_duplicates(repo)}
    dup = dups["PriorityClass infra-critical"]
    assert {m.cluster for m in dup.members} == {"lab", "phx"}
    assert 0.8 <= dup.similarity < 1
    assert "value" not in dup.common and dup.common["description"]
    text = audit.describe(list(dups.values()))
    assert "k8s/clusters/lab/infrastructure-config/priority.yaml:2" in text
    assert "/value" in text


def test_threshold_excludes_different_objects(repo: Path) -> None:
    plant(repo)
    labels = {d.label for d in audit.find_duplicates(repo, threshold=0.95)}
    assert "PriorityClass infra-critical" not in labels


def test_apply_moves_to_base_and_builds_the_same(repo: Path) -> None:
    plant(repo)
    before = audit.snapshot(repo)
    dups = [d for d in audit.find_duplicates(repo) if d.kind == "PriorityClass"]
    lines = audit.apply(repo, dups)
    assert lines and "now in k8s/base/infrastructure-config/priority.yaml" in lines[0], lines
    assert audit.snapshot(repo) == before
    base = repo / "k8s/base/infrastructure-config/priority.yaml"
    assert base.exists() and "value:" not in base.read_text(encoding="utf-8")
    assert "planted duplicate" in base.read_text(encoding="utf-8")  # comments survive the move
    for cluster in ("lab", "phx"):
        assert not (repo / f"k8s/clusters/{cluster}/infrastructure-config/priority.yaml").exists()
        kfile = (repo / f"k8s/clusters/{cluster}/infrastructure-config/kustomization.yaml").read_text()
        assert "base/infrastructure-config" in kfile and "/value" in kfile
    assert "PriorityClass infra-critical" not in {d.label for d in audit.find_duplicates(repo)}
    assert validate(repo)[1].errors == []


def test_apply_everything_keeps_every_build(repo: Path) -> None:
    plant(repo)
    before = audit.snapshot(repo)
    dups = audit.find_duplicates(repo)
    assert len(dups) >= 2
    lines = audit.apply(repo, dups)
    assert len(lines) == len(dups), lines
    moved = [line for line in lines if "now in k8s/base/" in line]
    assert moved and all("not moved" not in line or "would change" in line for line in lines), lines
    assert audit.snapshot(repo) == before
    assert validate(repo)[1].errors == []
