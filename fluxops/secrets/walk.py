"""Which files of a repository the secret tasks look at: every file git would commit, hidden ones too.

In a git work tree that is ``git ls-files --cached --others --exclude-standard`` (tracked files plus
untracked ones that .gitignore does not exclude); outside git, every file but the ``.git`` folder.
fluxops' own state folder (``.fluxops/``: build cache, staging copies) is never part of it.
Encrypted files are then picked by content (:mod:`fluxops.secrets.encrypted`), never by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from fluxops import clusters
from fluxops.secrets.encrypted import Inspection, inspect
from fluxops.secrets.staging import STATE_DIR

TEMP_SUFFIX = ".tmp"  # atomic_write's temp files (".<name>.<random>.tmp"), never a secret of their own


def _git_files(root: Path) -> list[Path] | None:
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            [git, "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = sorted({name for name in out.decode(errors="surrogateescape").split("\0") if name})
    return [root / name for name in names]


def repository_files(root: Path) -> list[Path]:
    """Every regular file git would commit under ``root`` (hidden folders included), sorted."""
    root = Path(root).absolute()
    listed = _git_files(root)
    if listed is None:
        listed = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            listed.extend(Path(folder) / name for name in sorted(files))
    own = root / STATE_DIR  # fluxops' own caches, staging copies and locks
    return [p for p in listed if p.is_file() and not p.is_symlink() and own not in p.parents]


def files_under(root: Path, folder: Path) -> list[Path]:
    """The repository files inside ``folder``."""
    folder = Path(folder).absolute()
    return [p for p in repository_files(root) if folder in p.parents]


def cluster_files(root: Path, cluster: str) -> list[Path]:
    """The repository files of one cluster's tree (``k8s/clusters/<cluster>/``)."""
    return files_under(root, clusters.cluster_dir(root, cluster))


def is_candidate(path: Path) -> bool:
    """True for a file that may hold a sops document (text formats sops writes), temp files excluded."""
    name = path.name
    if name.startswith(".") and name.endswith(TEMP_SUFFIX):
        return False
    return name.endswith((".yaml", ".yml", ".json", ".env", ".ini")) or "." not in name


def inspect_cluster(root: Path, cluster: str) -> list[Inspection]:
    """The encryption state of every candidate file of a cluster that is not plain text."""
    found = [inspect(p) for p in cluster_files(root, cluster) if is_candidate(p)]
    return [i for i in found if i.state in ("encrypted", "damaged")]


def encrypted_files(root: Path, cluster: str) -> list[Path]:
    """The cluster's files that carry sops metadata, whatever their names, sorted."""
    return [i.path for i in inspect_cluster(root, cluster) if i.state == "encrypted"]
