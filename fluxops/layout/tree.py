"""Load the tree: parse every file, find each cluster's phases, build every kustomization."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.clusters import kustomization_file
from fluxops.errors import LayoutError
from fluxops.layout.findings import Findings
from fluxops.layout.kustomize import (
    Builder,
    BuildResult,
    is_remote,
    local_refs,
    read_kustomization,
)
from fluxops.layout.model import BOOTSTRAP_NAME, Cluster, Phase, Repo, is_flux_kustomization, meta
from fluxops.layout.sources import Sources, line_of, read_sources

MAX_NESTING = 5


@dataclass
class Tree:
    """A loaded tree: sources, clusters with built phases, every build, and loading findings."""

    repo: Repo
    sources: Sources
    clusters: dict[str, Cluster]
    builds: dict[Path, BuildResult] = field(default_factory=dict)
    folders: dict[Path, str] = field(default_factory=dict)
    findings: Findings = field(default_factory=Findings)
    only: str | None = None

    def rel(self, path: Path) -> str:
        """``path`` relative to the checkout."""
        return self.repo.rel(path)

    def root_objects(self, cluster: str) -> list[dict[str, Any]]:
        """What a cluster's root folder builds to (bootstrap's objects and the phase Kustomizations)."""
        result = self.builds.get((self.repo.clusters_dir / cluster).resolve())
        return result.objects if result is not None and result.ok else []

    def source_of(self, obj: dict[str, Any], cluster: str = "") -> Any:
        """The source document an object of a build came from (None if not found)."""
        name, namespace = meta(obj)
        under = (self.rel(self.repo.clusters_dir / cluster),) if cluster else ()
        return self.sources.find(str(obj.get("kind", "")), name, namespace, under)


def check_root(root: Path) -> Repo:
    """The repo at ``root``; raises LayoutError when there is no k8s/clusters tree."""
    repo = Repo(root.resolve())
    if not repo.clusters_dir.is_dir():
        raise LayoutError(f"no GitOps tree at {repo.clusters_dir} (run from the fluxops checkout)")
    return repo


def load(root: Path, cluster: str | None = None, *, jobs: int | None = None, cache: bool = True) -> Tree:
    """Read and build the tree (one cluster or all), recording what does not load or build."""
    repo = check_root(root)
    names = repo.cluster_names()
    if cluster is not None and cluster not in names:
        raise LayoutError(f"unknown cluster {cluster!r}: k8s/clusters has {', '.join(names) or 'none'}")
    chosen = [cluster] if cluster else names
    sources = read_sources(repo.root, [repo.k8s, repo.sops_config])
    tree = Tree(repo, sources, {n: Cluster(n, repo.clusters_dir / n) for n in chosen}, only=cluster)
    for file, exc in sources.errors.items():
        if cluster and file.startswith("k8s/clusters/") and not file.startswith(f"k8s/clusters/{cluster}/"):
            continue
        tree.findings.error("yaml", f"YAML does not parse: {exc}", file=file, line=exc.line)
    legacy = repo.k8s / "infrastructure"
    if legacy.exists():
        tree.findings.error(
            "legacy",
            "k8s/infrastructure/ is the legacy layout the proposal removed; move what it holds to "
            "k8s/base/ or a cluster overlay and delete it",
            file=tree.rel(legacy),
        )
    builder = Builder(repo.cache_dir if cache else None, jobs)
    roots = {c.folder.resolve() for c in tree.clusters.values() if kustomization_file(c.folder)}
    tree.builds.update(builder.build_all(roots))
    for c in tree.clusters.values():
        _find_phases(tree, c)
    _build_phases(tree, builder)
    return tree


def _find_phases(tree: Tree, cluster: Cluster) -> None:
    """The Flux Kustomizations the cluster's root applies (bootstrap's own one excluded)."""
    folder = cluster.folder.resolve()
    result = tree.builds.get(folder)
    if result is not None and result.ok:
        objects = [o for o in result.objects if is_flux_kustomization(o)]
    else:
        if result is not None:
            tree.findings.error(
                "build",
                f"cluster root does not build: {result.error}",
                file=tree.rel(kustomization_file(folder) or folder),
                cluster=cluster.name,
            )
        else:
            tree.findings.warning(
                "root",
                "cluster folder has no kustomization.yaml; Flux would apply every manifest below it",
                file=tree.rel(folder),
                cluster=cluster.name,
            )
        top = sorted(p for p in folder.iterdir() if p.is_file())
        objects = [
            d.data
            for p in top
            for d in tree.sources.docs.get(tree.rel(p), [])
            if is_flux_kustomization(d.data)
        ]
    for obj in objects:
        _add_phase(tree, cluster, obj)


def _add_phase(tree: Tree, cluster: Cluster, obj: dict[str, Any]) -> None:
    name, namespace = meta(obj)
    if name == BOOTSTRAP_NAME or cluster.phase(name) is not None:
        return
    src = tree.source_of(obj, cluster.name)
    phase = Phase(name, namespace, obj, src=src.data if src else None)
    if src is not None:
        phase.file, phase.line = src.file, src.line
    cluster.phases.append(phase)
    phase.folder = tree.repo.source_path(phase.path)
    if not phase.folder.exists():
        tree.findings.error(
            "path-missing",
            f"Kustomization {name} has spec.path {phase.path!r}, which does not exist in the repository",
            cluster=cluster.name,
            **{**phase.where, "line": line_of(phase.src, "spec", "path") or phase.line},
        )
        phase.folder = None


def _reachable(tree: Tree, start: Path, seen: dict[Path, str], context: dict[str, str] | None = None) -> None:
    """Every kustomization folder a build of ``start`` reads, with local reference problems recorded.

    ``context`` (cluster and phase) is attached to those findings.
    """
    folder = start.resolve()
    if folder in seen:
        return
    kfile = kustomization_file(folder)
    if kfile is None:
        return
    seen[folder] = tree.rel(kfile)
    data = read_kustomization(folder)
    for ref, keys in local_refs(data):
        where = {**(context or {}), "file": tree.rel(kfile), "line": line_of(data, *keys)}
        if is_remote(ref):
            tree.findings.error("remote", f"remote reference {ref!r}: builds must be offline", **where)
            continue
        target = (folder / ref).resolve()
        if not target.exists():
            tree.findings.error(
                "path-missing", f"{keys[0]} entry {ref!r} does not exist ({tree.rel(target)})", **where
            )
        elif target.is_dir():
            if kustomization_file(target) is None and keys[0] in ("resources", "components", "bases"):
                tree.findings.error(
                    "path-missing", f"{keys[0]} entry {ref!r} is a folder without kustomization.yaml", **where
                )
            else:
                _reachable(tree, target, seen, context)


def _build_phases(tree: Tree, builder: Builder) -> None:
    folders: dict[Path, str] = {}
    for cluster in tree.clusters.values():
        _reachable(tree, cluster.folder, folders, {"cluster": cluster.name})
    for _ in range(MAX_NESTING):
        pending = [p for c in tree.clusters.values() for p in c.phases if p.folder and not p.built]
        if not pending:
            break
        for cluster in tree.clusters.values():
            for phase in cluster.phases:
                if phase in pending:
                    context = {"cluster": cluster.name, "phase": phase.name}
                    _reachable(tree, phase.folder, folders, context)  # type: ignore[arg-type]
        tree.builds.update(builder.build_all([f for f in folders if f not in tree.builds]))
        for cluster in tree.clusters.values():
            for phase in list(cluster.phases):
                if phase in pending:
                    _fill_phase(tree, cluster, phase)
    tree.folders = folders
    _report_build_failures(tree)
    if tree.only is None:
        _report_orphans(tree)


def _fill_phase(tree: Tree, cluster: Cluster, phase: Phase) -> None:
    phase.built = True
    folder = phase.folder
    assert folder is not None
    if kustomization_file(folder) is None:
        tree.findings.warning(
            "no-kustomization",
            f"{tree.rel(folder)} has no kustomization.yaml; Flux generates one from every manifest in it",
            cluster=cluster.name,
            **phase.where,
        )
        docs = [
            d.data
            for f, ds in tree.sources.docs.items()
            if (tree.repo.root / f).resolve().is_relative_to(folder)
            for d in ds
            if isinstance(d.data, dict) and d.data.get("apiVersion")
        ]
        phase.objects = docs
        return
    result = tree.builds.get(folder.resolve())
    if result is not None and result.ok:
        phase.objects = result.objects
        for obj in result.objects:
            if is_flux_kustomization(obj):
                _add_phase(tree, cluster, obj)


def _report_build_failures(tree: Tree) -> None:
    """A failed build is reported where it starts: not for folders that fail only through a child."""
    bad_refs = {f.file for f in tree.findings.errors if f.code in ("path-missing", "remote")}
    failed = {f for f, r in tree.builds.items() if not r.ok}
    for folder in sorted(failed):
        kfile = tree.folders.get(folder) or tree.rel(kustomization_file(folder) or folder)
        if kfile in bad_refs:
            continue
        children: dict[Path, str] = {}
        for ref, _ in local_refs(read_kustomization(folder)):
            target = (folder / ref).resolve()
            if target.is_dir() and not is_remote(ref):
                reachable_folders(target, children)
        if any(c in failed or tree.folders.get(c) in bad_refs for c in children if c != folder):
            continue
        tree.findings.error("build", f"kustomize build fails: {tree.builds[folder].error}", file=kfile)


def reachable_folders(start: Path, seen: dict[Path, str]) -> None:
    """Every kustomization folder a build of ``start`` reads (no findings recorded)."""
    folder = start.resolve()
    kfile = kustomization_file(folder)
    if folder in seen or kfile is None:
        return
    seen[folder] = str(kfile)
    for ref, _ in local_refs(read_kustomization(folder)):
        target = (folder / ref).resolve()
        if target.is_dir() and not is_remote(ref):
            reachable_folders(target, seen)


def _report_orphans(tree: Tree) -> None:
    used = set(tree.folders)
    for kfile in sorted(tree.repo.k8s.rglob("kustomization.yaml")):
        folder = kfile.parent.resolve()
        if folder not in used:
            tree.findings.warning(
                "unused",
                f"{tree.rel(folder)} is built by no phase of any cluster (remove it or reference it)",
                file=tree.rel(kfile),
            )
