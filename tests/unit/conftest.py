"""Fixtures of the key and secret tests: a scratch repository with per-cluster age keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def bootstrap_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """This repository's tree with test keys and their secrets, committed; and its key store (once per
    module of the bootstrap tests)."""
    from tests.unit.bootstrap_testing import make_template

    return make_template(tmp_path_factory.mktemp("bootstrap"))


@pytest.fixture
def world(bootstrap_template: tuple[Path, Path], tmp_path: Path) -> Any:
    """A fresh bootstrap World (repository, key store, remote, inventory) from the module's template."""
    from tests.unit.bootstrap_testing import make_world

    return make_world(*bootstrap_template, tmp_path / "world")
