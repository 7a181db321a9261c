"""Fixtures of the key and secret tests: a scratch repository with per-cluster age keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.sops_testing import make_repo, setup_cluster_keys


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    """The key store of the test, outside the scratch repository."""
    return tmp_path / "keys"


@pytest.fixture
def repo(tmp_path: Path, key_dir: Path) -> Path:
    """A scratch repository (lab and phx trees, .sops.yaml) whose clusters have keys in ``key_dir``."""
    root = make_repo(tmp_path / "repo", key_dir)
    setup_cluster_keys(root, key_dir)
    return root
