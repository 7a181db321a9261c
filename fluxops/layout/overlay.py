"""A folder whose kustomization file Flux rewrites before building, and the shadow tree that builds it.

kustomize-controller writes the kustomization file it generates or amends over the one in its own
copy of the source, then runs kustomize on that folder (fluxcd/pkg kustomize/kustomize_generator.go,
``WriteFile``). The checkout is never written here: a shadow tree under a temporary folder mirrors
the source root with symbolic links, except along the path to the folder, whose kustomization file
is the rewritten one. Every relative reference therefore resolves as it does in Flux's copy, and
kustomize's origin paths stay relative to the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxops.clusters import KUSTOMIZATION_FILES


@dataclass(frozen=True)
class Overlay:
    """``folder`` (inside the source ``root``) built with ``text`` as its kustomization file."""

    folder: Path
    root: Path
    filename: str
    text: str

    def data(self) -> dict[str, Any]:
        """The kustomization the build uses (the text is JSON)."""
        return json.loads(self.text)

    def sort_key(self) -> str:
        """A stable order among build targets."""
        return f"{self.folder}\0{self.filename}\0{self.text}"


@contextmanager
def shadow_tree(overlay: Overlay) -> Iterator[tuple[Path, Path]]:
    """A temporary mirror of the source root: (its root, the folder holding the rewritten file).

    Removed on exit; only links and the one file are created, nothing is copied.
    """
    top = Path(tempfile.mkdtemp(prefix="fluxops-flux-build-", dir=_scratch()))
    try:
        real, fake = overlay.root, top
        for part in overlay.folder.relative_to(overlay.root).parts:
            _link_entries(real, fake, skip={part})
            real, fake = real / part, fake / part
            fake.mkdir()
        _link_entries(real, fake, skip=set(KUSTOMIZATION_FILES))
        (fake / overlay.filename).write_text(overlay.text, encoding="utf-8")
        yield top, fake
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _scratch() -> str | None:
    """Where shadow trees go: memory-backed /dev/shm when writable (links and one small file; a
    disk file system journals every one), else the system's temporary folder. TMPDIR wins."""
    if os.environ.get("TMPDIR"):
        return None
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _link_entries(real: Path, fake: Path, skip: set[str]) -> None:
    with os.scandir(real) as entries:
        for entry in entries:
            if entry.name not in skip:
                os.symlink(entry.path, fake / entry.name)
