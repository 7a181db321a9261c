"""A private copy of secret files where sops may rewrite in place; results come back by atomic rename.

``sops updatekeys`` truncates and rewrites its file: killed half-way, it leaves a cut file. So it
runs on copies instead, in ``<root>/.fluxops/staging-*`` (0700, on the repository's file system).
The copies keep their repository-relative paths and the folder gets a copy of ``.sops.yaml``:
sops matches ``path_regex`` against the path relative to its config file, so every rule applies
to a copy exactly as to the original. A finished copy replaces its original with ``os.replace``
(old or new content at every moment, never a part of either).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from fluxops.files import atomic_write, file_mode
from fluxops.secrets.rules import CONFIG_NAME

STATE_DIR = ".fluxops"
PREFIX = "staging-"


def staging_parent(root: Path) -> Path:
    """Where staging folders live: ``<root>/.fluxops`` (git-ignored, same file system as the tree)."""
    return Path(root) / STATE_DIR


def remove_leftovers(root: Path) -> list[Path]:
    """Delete staging folders a killed run left behind (copies only; the originals are untouched)."""
    parent = staging_parent(root)
    removed = sorted(parent.glob(f"{PREFIX}*")) if parent.is_dir() else []
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


class Staging:
    """A staging folder for one repository root; use as a context manager (removed on exit)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        parent = staging_parent(self.root)
        parent.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        config = self.root / CONFIG_NAME
        if config.exists():
            shutil.copyfile(config, self.dir / CONFIG_NAME)

    @property
    def config(self) -> Path:
        """The copy of ``.sops.yaml`` the staged sops calls use."""
        return self.dir / CONFIG_NAME

    def relative(self, original: Path) -> str:
        """The repository-relative path of an original (the same inside the staging folder)."""
        return Path(original).absolute().relative_to(self.root).as_posix()

    def stage(self, original: Path) -> Path:
        """A fresh private copy of ``original`` at the same relative path; returns the copy."""
        copy = self.dir / self.relative(original)
        copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(copy, Path(original).read_bytes(), mode=file_mode(original))
        return copy

    def copy_of(self, original: Path) -> Path:
        """Where the copy of ``original`` lives."""
        return self.dir / self.relative(original)

    def commit(self, original: Path) -> None:
        """Move the copy over the original atomically (its mode kept), and make the rename durable."""
        copy = self.copy_of(original)
        os.chmod(copy, file_mode(original))
        with open(copy, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(copy, original)
        dir_fd = os.open(Path(original).parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        """Remove the staging folder and what is left in it."""
        shutil.rmtree(self.dir, ignore_errors=True)
        parent = self.dir.parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()

    def __enter__(self) -> Staging:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
