"""Copies of the shipped k8s/ tree for the layout tests, sharing one warm build cache per process."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from fluxops.settings import LayoutSettings

REPO = Path(__file__).resolve().parents[2]
# The layout settings of this repository's invoke.yaml (a copy of its tree has no invoke.yaml).
THIS_REPO = LayoutSettings(policy="fluxops-phases", folders=("k8s",))


@functools.cache
def pristine_root() -> Path:
    """A copy of k8s/ and .sops.yaml, validated once so its kustomize cache is warm."""
    from fluxops.layout.validate import validate

    root = Path(tempfile.mkdtemp(prefix="fluxops-layout-"))
    atexit.register(shutil.rmtree, root, True)
    shutil.copytree(REPO / "k8s", root / "k8s")
    shutil.copy2(REPO / ".sops.yaml", root / ".sops.yaml")
    validate(root, layout=THIS_REPO)
    return root


def copy_tree(dest: Path) -> Path:
    """A fresh copy of the pristine tree (with its cache) at ``dest``."""
    shutil.copytree(pristine_root(), dest)
    return dest
