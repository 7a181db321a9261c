"""The working tree as a git commit Flux can fetch, without touching the repository's refs, index or objects.

A rehearsal's GitRepository must see uncommitted changes too. The snapshot is a commit of the
working tree (what ``git add -A`` would stage: ignored files left out) on top of HEAD, written with a
temporary index into a throw-away bare repository whose object store borrows the real one's
(``objects/info/alternates``). Only the throw-away repository is written; its branch (the
GitRepository's) points at the snapshot, so a ``file://`` clone of it gets the working tree.
A folder that is no git repository is snapshotted whole (every file counts as uncommitted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fluxops.errors import FluxopsError
from fluxops.shell import local

AUTHOR = {
    "GIT_AUTHOR_NAME": "fluxops rehearse",
    "GIT_AUTHOR_EMAIL": "rehearse@fluxops.invalid",
    "GIT_COMMITTER_NAME": "fluxops rehearse",
    "GIT_COMMITTER_EMAIL": "rehearse@fluxops.invalid",
}


@dataclass(frozen=True)
class Snapshot:
    """The throw-away repository (``url``), its ``branch``, the ``commit`` and what it holds beyond HEAD."""

    url: str
    branch: str
    commit: str
    head: str | None
    changed: list[str] = field(default_factory=list)

    @property
    def revision(self) -> str:
        """The revision Flux will report: ``<branch>@sha1:<commit>``."""
        return f"{self.branch}@sha1:{self.commit}"


def _git(argv: list[str], env: dict[str, str], cwd: Path | None = None, check: bool = True) -> str:
    result = local().run(["git", *argv], env=env, cwd=cwd, check=False, inherit_env=False, timeout=120)
    if check and result.rc != 0:
        raise FluxopsError(
            f"git {' '.join(argv[:2])} failed while snapshotting the working tree: {result.stderr.strip()}"
        )
    return result.stdout if result.rc == 0 else ""


def take(root: Path, dest: Path, branch: str) -> Snapshot:
    """Snapshot the working tree of ``root`` into the bare repository ``dest`` on ``branch``."""
    root = Path(root).resolve()
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(dest.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_OPTIONAL_LOCKS": "0",
        **AUTHOR,
    }
    _git(["init", "--quiet", "--bare", str(dest)], base)
    toplevel = _git(["rev-parse", "--show-toplevel"], base, cwd=root, check=False).strip()
    env = {
        **base,
        "GIT_INDEX_FILE": str(dest / "snapshot.index"),
        "GIT_OBJECT_DIRECTORY": str(dest / "objects"),
    }
    if toplevel and Path(toplevel).resolve() == root:
        objects = Path(_git(["rev-parse", "--git-path", "objects"], base, cwd=root).strip())
        objects = objects if objects.is_absolute() else root / objects
        (dest / "objects" / "info" / "alternates").write_text(f"{objects.resolve()}\n")
        env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = str(objects.resolve())
        head = _git(["rev-parse", "--verify", "--quiet", "HEAD"], env, cwd=root, check=False).strip() or None
        if head:
            _git(["read-tree", "HEAD"], env, cwd=root)
        _git(["add", "--all", "--", "."], env, cwd=root)
        tree = _git(["write-tree"], env, cwd=root).strip()
        parents = ["-p", head] if head else []
        commit = _git(
            ["commit-tree", tree, *parents, "-m", "fluxops rehearsal: working tree"], env, cwd=root
        ).strip()
        changed = (
            _git(["diff-tree", "-r", "--name-only", "--no-commit-id", head, commit], env, cwd=root).split()
            if head
            else []
        )
    else:
        env.update(GIT_DIR=str(dest), GIT_WORK_TREE=str(root))
        _git(["add", "--all", "--", "."], env, cwd=root)
        tree = _git(["write-tree"], env, cwd=root).strip()
        commit = _git(["commit-tree", tree, "-m", "fluxops rehearsal: folder"], env, cwd=root).strip()
        head = None
        changed = _git(["ls-tree", "-r", "--name-only", tree], env, cwd=root).split()
    _git(["--git-dir", str(dest), "update-ref", f"refs/heads/{branch}", commit], base)
    _git(["--git-dir", str(dest), "symbolic-ref", "HEAD", f"refs/heads/{branch}"], base)
    (dest / "snapshot.index").unlink(missing_ok=True)
    return Snapshot(f"file://{dest}", branch, commit, head, changed)
