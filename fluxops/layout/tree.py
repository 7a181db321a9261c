"""Load the tree: parse every file, find each cluster's phases, build each as Flux builds it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.clusters import kustomization_file
from fluxops.errors import LayoutError
from fluxops.layout.findings import Findings
from fluxops.layout.flux_build import FluxPlan, finish, plan
from fluxops.layout.flux_spec import Problem, spec_of, text_field
from fluxops.layout.kustomize import (
    Builder,
    BuildResult,
    Target,
    is_remote,
    local_refs,
    read_kustomization,
)
from fluxops.layout.model import BOOTSTRAP_NAME, Cluster, Phase, Repo, is_flux_kustomization, meta
from fluxops.layout.overlay import Overlay
from fluxops.layout.postbuild import MissingSource
from fluxops.layout.sources import Sources, line_of, read_sources

MAX_NESTING = 5
# Rounds of building: nesting, plus rounds that wait for a substituteFrom object another phase applies.
MAX_ROUNDS = 3 * MAX_NESTING


@dataclass
class Tree:
    """A loaded tree: sources, clusters with built phases, every build, and loading findings."""

    repo: Repo
    sources: Sources
    clusters: dict[str, Cluster]
    builds: dict[Target, BuildResult] = field(default_factory=dict)
    folders: dict[Path, str] = field(default_factory=dict)
    findings: Findings = field(default_factory=Findings)
    only: str | None = None
    plans: dict[tuple[str, str], FluxPlan] = field(default_factory=dict)
    renames: set[tuple[str, str]] = field(default_factory=set)
    flux_roots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def rel(self, path: Path) -> str:
        """``path`` relative to the checkout."""
        return self.repo.rel(path)

    def root_objects(self, cluster: str) -> list[dict[str, Any]]:
        """What a cluster's root folder builds to (bootstrap's objects and the phase Kustomizations).

        When the bootstrap Kustomization that applies the root has fields of its own (postBuild,
        patches, ...), these are its objects as Flux builds them.
        """
        if cluster in self.flux_roots:
            return self.flux_roots[cluster]
        result = self.builds.get((self.repo.clusters_dir / cluster).resolve())
        return result.objects if result is not None and result.ok else []

    def source_of(self, obj: dict[str, Any], cluster: str = "") -> Any:
        """The source document an object of a build came from (None if not found).

        A name a phase's ``namePrefix``/``nameSuffix`` changed is found by its name in the files.
        """
        name, namespace = meta(obj)
        under = (self.rel(self.repo.clusters_dir / cluster),) if cluster else ()
        kind = str(obj.get("kind", ""))
        found = self.sources.find(kind, name, namespace, under)
        for prefix, suffix in sorted(self.renames):
            if found is not None:
                break
            if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
                found = self.sources.find(kind, name[len(prefix) : len(name) - len(suffix)], namespace, under)
        return found


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
        _build_root(tree, c, builder)
        _find_phases(tree, c)
    _build_phases(tree, builder)
    return tree


def _build_root(tree: Tree, cluster: Cluster, builder: Builder) -> None:
    """The root as its bootstrap Kustomization (flux-system, ``spec.path`` the cluster folder) builds it.

    Only when that Kustomization makes Flux's build differ from the plain one; its problems are
    reported where it is defined.
    """
    folder = cluster.folder.resolve()
    result = tree.builds.get(folder)
    if result is None or not result.ok:
        return
    boot = next(
        (
            o
            for o in result.objects
            if is_flux_kustomization(o)
            and meta(o)[0] == BOOTSTRAP_NAME
            and tree.repo.source_path(text_field(o, "path") or "./") == folder
        ),
        None,
    )
    if boot is None:
        return
    flux_plan = plan(boot, tree.repo.root)
    spec = spec_of(boot)
    if flux_plan.target == folder and not any(k in spec for k in ("postBuild", "commonMetadata")):
        return
    if flux_plan.target is not None and flux_plan.target not in tree.builds:
        tree.builds[flux_plan.target] = builder.build(flux_plan.target)
    built = tree.builds.get(flux_plan.target) if flux_plan.target is not None else None
    flux = finish(flux_plan, built, lambda kind, name, ns: _lookup(tree, cluster, kind, name, ns))
    if flux.ok:
        tree.flux_roots[cluster.name] = flux.objects
        return
    src = tree.source_of(boot, cluster.name)
    problems = [*flux.problems, *(_missing_problem(cluster, m) for m in flux.missing)]
    for problem in problems:
        line = line_of(src.data, *problem.keys) if src is not None else None
        tree.findings.error(
            "flux-build",
            f"Kustomization {BOOTSTRAP_NAME}: {problem.message}",
            cluster=cluster.name,
            file=src.file if src is not None else tree.rel(folder),
            line=line or (src.line if src is not None else None),
        )


def _find_phases(tree: Tree, cluster: Cluster) -> None:
    """The Flux Kustomizations the cluster's root applies (bootstrap's own one excluded)."""
    folder = cluster.folder.resolve()
    result = tree.builds.get(folder)
    if result is not None and result.ok:
        objects = [o for o in tree.root_objects(cluster.name) if is_flux_kustomization(o)]
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
    prefix, suffix = text_field(obj, "namePrefix"), text_field(obj, "nameSuffix")
    if prefix or suffix:
        tree.renames.add((prefix, suffix))


def _reachable(
    tree: Tree,
    start: Path,
    used: dict[Path, str],
    plain: set[Path],
    context: dict[str, str] | None = None,
    *,
    build_self: bool = True,
) -> None:
    """Every kustomization folder a build of ``start`` reads, with local reference problems recorded.

    Folders kustomize builds as they are go to ``plain`` (``start`` only with ``build_self``: Flux
    rewrites the kustomization file of a phase's own folder); ``context`` (cluster and phase) is
    attached to the findings.
    """
    folder = start.resolve()
    kfile = kustomization_file(folder)
    if kfile is None:
        return
    if build_self:
        plain.add(folder)
    if folder in used:
        return
    used[folder] = tree.rel(kfile)
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
                _reachable(tree, target, used, plain, context)


def _plan_phase(tree: Tree, cluster: Cluster, phase: Phase, used: dict[Path, str], plain: set[Path]) -> None:
    """How Flux builds the phase, and every folder that build reads."""
    flux_plan = plan(phase.obj, tree.repo.root)
    tree.plans[(cluster.name, phase.name)] = flux_plan
    context = {"cluster": cluster.name, "phase": phase.name}
    folder, kustomization = flux_plan.folder, flux_plan.kustomization
    if folder is None or kustomization is None:
        return
    if not isinstance(flux_plan.target, Overlay):
        _reachable(tree, folder, used, plain, context)
        return
    _reachable(tree, folder, used, plain, context, build_self=False)
    generated = kustomization.data.get("resources", []) if kustomization.generated else []
    for ref in [*generated, *kustomization.data.get("components", [])]:
        if isinstance(ref, str) and (folder / ref).is_dir():
            _reachable(tree, folder / ref, used, plain, context)
    if kustomization.generated:
        tree.findings.warning(
            "no-kustomization",
            f"{tree.rel(folder)} has no kustomization.yaml; Flux generates one from every manifest below it",
            cluster=cluster.name,
            **phase.where,
        )


def _build_phases(tree: Tree, builder: Builder) -> None:
    used: dict[Path, str] = {}
    plain: set[Path] = set()
    for cluster in tree.clusters.values():
        _reachable(tree, cluster.folder, used, plain, {"cluster": cluster.name})
    final = False
    for _ in range(MAX_ROUNDS):
        pending = [(c, p) for c in tree.clusters.values() for p in c.phases if p.folder and not p.built]
        if not pending:
            break
        for cluster, phase in pending:
            if (cluster.name, phase.name) not in tree.plans:
                _plan_phase(tree, cluster, phase, used, plain)
        targets: set[Target] = set(plain)
        targets.update(t for c, p in pending if (t := tree.plans[(c.name, p.name)].target) is not None)
        tree.builds.update(builder.build_all([t for t in targets if t not in tree.builds]))
        progress = [_fill_phase(tree, c, p, final) for c, p in pending]
        # When every pending phase waits for a substituteFrom object, the next round reports them.
        final = not any(progress)
    for cluster in tree.clusters.values():
        for phase in cluster.phases:
            if phase.folder and not phase.built and (cluster.name, phase.name) in tree.plans:
                _fill_phase(tree, cluster, phase, final=True)
    tree.folders = used
    _report_build_failures(tree)
    if tree.only is None:
        _report_orphans(tree)


def _fill_phase(tree: Tree, cluster: Cluster, phase: Phase, final: bool) -> bool:
    """Finish the phase's Flux build; False while it waits for a substituteFrom object (not ``final``)."""
    flux_plan = tree.plans[(cluster.name, phase.name)]
    built = tree.builds.get(flux_plan.target) if flux_plan.target is not None else None
    result = finish(flux_plan, built, lambda kind, name, ns: _lookup(tree, cluster, kind, name, ns))
    if result.missing and not final:
        return False
    phase.built = True
    phase.objects = result.objects
    for problem in [] if result.build_failed else result.problems:
        # (a failed kustomize build is reported where it starts: _report_build_failures)
        _report(tree, cluster, phase, problem, "substitute" if "postBuild" in problem.keys else "flux-build")
    for missing in result.missing:
        _report(tree, cluster, phase, _missing_problem(cluster, missing), "substitute-missing")
    for obj in result.objects:
        if is_flux_kustomization(obj):
            _add_phase(tree, cluster, obj)
    return True


def _report(tree: Tree, cluster: Cluster, phase: Phase, problem: Problem, code: str) -> None:
    add = tree.findings.error if problem.severity == "error" else tree.findings.warning
    where = {
        **phase.where,
        "line": (line_of(phase.src, *problem.keys) if problem.keys else None) or phase.line,
    }
    add(code, f"Kustomization {phase.name}: {problem.message}", cluster=cluster.name, **where)


def _missing_problem(cluster: Cluster, missing: MissingSource) -> Problem:
    return Problem(
        f"postBuild.substituteFrom {missing.kind} {missing.namespace}/{missing.name} is applied by no "
        f"Kustomization of cluster {cluster.name} and defined in no file of the tree; Flux stops this "
        "Kustomization until it exists (mark it optional: true if it may be absent)",
        ("spec", "postBuild", "substituteFrom", missing.index),
    )


def _lookup(tree: Tree, cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    """A ConfigMap or Secret as the cluster would hold it for substituteFrom.

    First what the cluster's root and built phases apply (exact namespace); then a document in the
    tree's files (this cluster's folder or shared folders, the same namespace or none), which
    bootstrap or an operator may have applied by hand.
    """
    applied = [*tree.root_objects(cluster.name), *(o for p in cluster.phases if p.built for o in p.objects)]
    for obj in applied:
        if obj.get("kind") == kind and meta(obj) == (name, namespace):
            return obj
    own = tree.rel(cluster.folder) + "/"
    for docs in tree.sources.docs.values():
        for doc in docs:
            if doc.kind != kind or doc.name != name or doc.namespace not in ("", namespace):
                continue
            if doc.file.startswith("k8s/clusters/") and not doc.file.startswith(own):
                continue
            return doc.data
    return None


def _report_build_failures(tree: Tree) -> None:
    """A failed build is reported where it starts: not for folders that fail only through a child."""
    bad_refs = {f.file for f in tree.findings.errors if f.code in ("path-missing", "remote")}
    failed = {f for f, r in tree.builds.items() if isinstance(f, Path) and not r.ok}

    def child_failed(folder: Path, data: Any) -> bool:
        children: dict[Path, str] = {}
        for ref, _ in local_refs(data):
            target = (folder / ref).resolve()
            if target.is_dir() and not is_remote(ref):
                reachable_folders(target, children)
        return any(c in failed or tree.folders.get(c) in bad_refs for c in children if c != folder)

    for folder in sorted(failed):
        kfile = tree.folders.get(folder) or tree.rel(kustomization_file(folder) or folder)
        if kfile in bad_refs or child_failed(folder, read_kustomization(folder)):
            continue
        tree.findings.error("build", f"kustomize build fails: {tree.builds[folder].error}", file=kfile)
    for cluster in tree.clusters.values():
        for phase in cluster.phases:
            flux_plan = tree.plans.get((cluster.name, phase.name))
            target = flux_plan.target if flux_plan is not None else None
            built = tree.builds.get(target) if isinstance(target, Overlay) else None
            if target is None or built is None or built.ok:
                continue
            if tree.folders.get(target.folder) in bad_refs or child_failed(target.folder, target.data()):
                continue
            problem = Problem(
                f"Flux's build of {tree.rel(target.folder)} fails: {built.error}", ("spec", "path")
            )
            _report(tree, cluster, phase, problem, "build")


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
