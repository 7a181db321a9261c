"""Load the tree: find the clusters, parse every file, build each Kustomization as Flux builds it."""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.clusters import kustomization_file
from fluxops.errors import LayoutError
from fluxops.layout.artifacts import ArtifactStore
from fluxops.layout.discovery import discover
from fluxops.layout.findings import Findings
from fluxops.layout.flux_build import FluxPlan, finish, plan
from fluxops.layout.flux_sources import Resolved, SourceResolver, is_generator, source_ref
from fluxops.layout.flux_spec import ERROR, Problem, spec_of, text_field
from fluxops.layout.kustomize import (
    Builder,
    BuildResult,
    Target,
    is_remote,
    local_refs,
    read_kustomization,
)
from fluxops.layout.model import (
    FLUX_KUSTOMIZE_GROUP,
    Cluster,
    Phase,
    Repo,
    is_flux_kustomization,
    meta,
)
from fluxops.layout.overlay import Overlay
from fluxops.layout.postbuild import MissingSource
from fluxops.layout.sources import SourceDoc, Sources, line_of, read_sources
from fluxops.secrets.rules import CONFIG_NAME
from fluxops.settings import LayoutSettings, repository_layout

# Passes over the phases: the first builds every phase it reaches (and the phases their builds
# reveal, as each build finishes); each further pass retries the phases still waiting for a
# substituteFrom object or a source another phase applies, until one finds nothing new.
MAX_PASSES = 15

# Called as builds finish: (builds done, builds started so far).
Progress = Callable[[int, int], None]
PhaseKey = tuple[str, str, str]  # (cluster, namespace, name)


@dataclass
class Tree:
    """A loaded tree: sources, clusters with built phases, every build, and loading findings.

    ``discovered`` holds every cluster found (``clusters`` only the loaded ones); ``sources_of`` the
    source each phase was built from; ``generated`` the folders built with the kustomization Flux
    generates (cluster, folder, where).
    """

    repo: Repo
    sources: Sources
    clusters: dict[str, Cluster]
    builds: dict[Target, BuildResult] = field(default_factory=dict)
    folders: dict[Path, str] = field(default_factory=dict)
    findings: Findings = field(default_factory=Findings)
    only: str | None = None
    plans: dict[PhaseKey, FluxPlan] = field(default_factory=dict)
    renames: set[tuple[str, str]] = field(default_factory=set)
    flux_roots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    layout: LayoutSettings = field(default_factory=LayoutSettings)
    discovered: dict[str, Path] = field(default_factory=dict)
    artifacts: ArtifactStore = field(default_factory=ArtifactStore)
    sources_of: dict[PhaseKey, Resolved] = field(default_factory=dict)
    generated: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    _rels: dict[Path, str] = field(default_factory=dict, repr=False)
    _templates: dict[str, list[_Template]] | None = field(default=None, repr=False)

    def rel(self, path: Path) -> str:
        """``path`` relative to the checkout (a staged artifact's path as the source path it mirrors)."""
        known = self._rels.get(path)
        if known is None:
            origin = self.artifacts.origin(path)
            if isinstance(origin, Path):
                known = self.repo.rel(origin)
            else:
                known = origin if origin is not None else self.repo.rel(path)
            self._rels[path] = known
        return known

    def root_objects(self, cluster: str) -> list[dict[str, Any]]:
        """What a cluster's folder builds to as its entry Kustomization builds it (the phase
        Kustomizations among them); the plain build when Flux's fails.
        """
        if cluster in self.flux_roots:
            return self.flux_roots[cluster]
        folder = self.clusters[cluster].folder if cluster in self.clusters else None
        result = self.builds.get(folder.resolve()) if folder is not None else None
        return result.objects if result is not None and result.ok else []

    def source_of(self, obj: dict[str, Any], cluster: str = "") -> Any:
        """The source document an object of a build came from (None if not found).

        A name a phase's ``namePrefix``/``nameSuffix`` changed is found by its name in the files; a
        name postBuild substituted (``name: ${APP}``) by the documents whose name is such a template,
        the one sharing most of the object's fields.
        """
        name, namespace = meta(obj)
        folder = self.clusters[cluster].folder if cluster in self.clusters else None
        under = (self.rel(folder),) if folder is not None else ()
        kind = str(obj.get("kind", ""))
        found = self.sources.find(kind, name, namespace, under, like=obj)
        for prefix, suffix in sorted(self.renames):
            if found is not None:
                break
            if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
                found = self.sources.find(
                    kind, name[len(prefix) : len(name) - len(suffix)], namespace, under, like=obj
                )
        return found if found is not None else self._templated(obj, kind, name, namespace)

    def _templated(self, obj: dict[str, Any], kind: str, name: str, namespace: str) -> Any:
        if self._templates is None:
            self._templates = {}
            for docs in self.sources.docs.values():
                for doc in docs:
                    if "${" in doc.name:
                        self._templates.setdefault(doc.kind, []).append(_Template.of(doc))
        candidates = [
            t
            for t in self._templates.get(kind, [])
            if t.name.fullmatch(name) and (t.namespace is None or t.namespace.fullmatch(namespace))
        ]
        if not candidates:
            return None
        paths = _key_paths(obj)
        return max(candidates, key=lambda t: len(t.paths & paths)).doc

    def scope(self) -> tuple[str, ...]:
        """Repository folders (relative, ending in ``/``) holding what the loaded clusters read.

        ``fluxops.layout.folders`` when set and every cluster is loaded; else each cluster's folder
        and every folder its builds read. An empty tuple means the whole repository.
        """
        if self.layout.folders and self.only is None:
            return tuple(f"{f.strip('/')}/" for f in self.layout.folders if f.strip("/") not in ("", "."))
        paths = [c.folder for c in self.clusters.values()]
        paths += list(self.folders)
        paths += [p.folder for c in self.clusters.values() for p in c.phases if p.folder is not None]
        rels = set()
        for path in paths:
            origin = self.artifacts.origin(path)
            path = origin if isinstance(origin, Path) else path
            if origin is None or isinstance(origin, Path):
                rel = self.repo.rel(path)
                if rel == ".":
                    return ()
                if not rel.startswith("/"):
                    rels.add(rel + "/")
        return tuple(r for r in sorted(rels) if not any(r != o and r.startswith(o) for o in rels))


@dataclass(frozen=True)
class _Template:
    """A source document whose name is a postBuild template, ready to be matched against objects."""

    doc: SourceDoc
    name: re.Pattern[str]
    namespace: re.Pattern[str] | None
    paths: frozenset[tuple[Any, ...]]

    @classmethod
    def of(cls, doc: SourceDoc) -> _Template:
        namespace = _pattern(doc.namespace) if doc.namespace else None
        return cls(doc, _pattern(doc.name), namespace, _key_paths(doc.data))


def _pattern(template: str) -> re.Pattern[str]:
    """What substituting the ``${...}`` expressions of ``template`` can give (for a full match)."""
    parts = re.split(r"\$\{[^}]*\}", template)
    return re.compile(".*".join(re.escape(p) for p in parts))


def _key_paths(data: Any, prefix: tuple[Any, ...] = ()) -> frozenset[tuple[Any, ...]]:
    """Every key path through nested mappings: two documents share as many keys (at any depth) as
    their key paths have in common.
    """
    if not isinstance(data, dict):
        return frozenset()
    paths: set[tuple[Any, ...]] = set()
    for key, value in data.items():
        path = (*prefix, key)
        paths.add(path)
        paths.update(_key_paths(value, path))
    return frozenset(paths)


def check_root(root: Path) -> Repo:
    """This repository's layout at ``root`` (``k8s/clusters``, for the audit); LayoutError without one."""
    repo = Repo(root.resolve())
    if not repo.clusters_dir.is_dir():
        raise LayoutError(f"no GitOps tree at {repo.clusters_dir} (run from the fluxops checkout)")
    return repo


class _CountingBuilder(Builder):
    """A Builder that reports (done, started) to ``progress`` as each build finishes."""

    def __init__(self, cache_dir: Path | None, jobs: int | None, progress: Progress | None) -> None:
        super().__init__(cache_dir, jobs, stable=True)
        self.progress = progress
        self.done = 0
        self.started = 0
        self._count = threading.Lock()
        self._submitted: set[Target] = set()

    def submit(self, target: Target) -> Future[BuildResult]:
        """As Builder.submit, counting each distinct target as started."""
        target = target if isinstance(target, Overlay) else target.resolve()
        with self._count:
            if target not in self._submitted:
                self._submitted.add(target)
                self.started += 1
        return super().submit(target)

    def _finished(self, result: BuildResult) -> BuildResult:
        """One more build done."""
        with self._count:
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, max(self.started, self.done))
        return result


def load(
    root: Path,
    cluster: str | None = None,
    *,
    jobs: int | None = None,
    cache: bool = True,
    layout: LayoutSettings | None = None,
    progress: Progress | None = None,
) -> Tree:
    """Find the clusters of the repository at ``root``, read and build them (one cluster or all).

    ``layout`` defaults to the ``fluxops.layout`` settings of ``root``'s own invoke.yaml (none: the
    whole repository, clusters found from their entry Kustomizations). ``progress`` is called as
    kustomize builds finish. What does not load or build is recorded in ``tree.findings``.
    """
    layout = settings_of(root, layout)
    repo = Repo(Path(root).resolve())
    folders = _read_folders(repo, layout)
    sources = read_sources(repo.root, folders)
    found = discover(repo.root, sources, layout)
    names = [c.name for c in found.clusters]
    if cluster is not None and cluster not in names:
        raise LayoutError(f"unknown cluster {cluster!r}: {repo.root} has {', '.join(names) or 'none'}")
    chosen = {c.name: c for c in found.clusters if cluster in (None, c.name)}
    tree = Tree(repo, sources, chosen, only=cluster, layout=layout)
    tree.discovered = {c.name: c.folder for c in found.clusters}
    if cluster is None:
        for file, line, message in found.problems:
            tree.findings.error("entry", message, file=file, line=line)
    builder = _CountingBuilder(repo.cache_dir if cache else None, jobs, progress)
    try:
        plans = _build_roots(tree, builder)
        for c in tree.clusters.values():
            _find_phases(tree, c)
        _build_phases(tree, builder, plans)
    finally:
        builder.close()
        tree.artifacts.close()
    _report_yaml_errors(tree)
    return tree


def settings_of(root: Path, layout: LayoutSettings | None) -> LayoutSettings:
    """``layout``, else the ``fluxops.layout`` settings of ``root``'s invoke.yaml; LayoutError when
    ``root`` is no folder.
    """
    if not Path(root).is_dir():
        raise LayoutError(f"{root} is not a folder: give the root of a repository holding a Flux tree")
    return layout if layout is not None else repository_layout(Path(root))


def _read_folders(repo: Repo, layout: LayoutSettings) -> list[Path]:
    """What to parse: ``fluxops.layout.folders`` (and .sops.yaml), else the whole repository."""
    if not layout.folders:
        return [repo.root]
    folders = []
    for rel in layout.folders:
        folder = (repo.root / rel).resolve()
        if not folder.is_dir() or not folder.is_relative_to(repo.root):
            raise LayoutError(
                f"fluxops.layout.folders: {rel!r} is not a folder of {repo.root}; list folders relative "
                "to the repository (e.g. [k8s])"
            )
        folders.append(folder)
    return [*folders, repo.sops_config]


def _report_yaml_errors(tree: Tree) -> None:
    """Files that do not parse, where a loaded cluster reads (any file Flux may build from)."""
    scope = tree.scope()
    for file, exc in tree.sources.errors.items():
        if file == CONFIG_NAME or not scope or any(file.startswith(s) for s in scope):
            tree.findings.error("yaml", f"YAML does not parse: {exc}", file=file, line=exc.line)


def _entry_object(tree: Tree, cluster: Cluster) -> dict[str, Any]:
    """The entry Kustomization, or one with only the cluster folder as path when the tree lacks it."""
    if cluster.entry.obj is not None:
        return cluster.entry.obj
    kind, namespace, name = cluster.entry.source
    rel = tree.repo.rel(cluster.folder)
    return {
        "apiVersion": f"{FLUX_KUSTOMIZE_GROUP}/v1",
        "kind": "Kustomization",
        "metadata": {"name": cluster.entry.name, "namespace": cluster.entry.namespace},
        "spec": {
            "path": "./" if rel == "." else f"./{rel}",
            "sourceRef": {"kind": kind, "name": name, "namespace": namespace},
        },
    }


def _build_roots(tree: Tree, builder: Builder) -> dict[str, FluxPlan]:
    """Each cluster folder as its entry Kustomization builds it (and its plain build, when it has a
    kustomization file: substituteFrom lookups and a fallback when Flux's build fails).
    """
    plans = {c.name: plan(_entry_object(tree, c), tree.repo.root) for c in tree.clusters.values()}
    targets: set[Target] = {p.target for p in plans.values() if p.target is not None}
    targets.update(c.folder.resolve() for c in tree.clusters.values() if kustomization_file(c.folder))
    _wait(tree, builder, targets)
    for cluster in tree.clusters.values():
        _finish_root(tree, cluster, plans[cluster.name])
    return plans


def _finish_root(tree: Tree, cluster: Cluster, flux_plan: FluxPlan) -> None:
    """Flux's objects of the cluster folder; problems reported at the entry Kustomization."""
    folder = cluster.folder.resolve()
    spec = spec_of(flux_plan.ks)
    if flux_plan.target == folder and not any(k in spec for k in ("postBuild", "commonMetadata")):
        return  # the plain build is Flux's (a failure is reported as a build failure)
    built = tree.builds.get(flux_plan.target) if flux_plan.target is not None else None
    flux = finish(flux_plan, built, lambda kind, name, ns: _lookup(tree, cluster, kind, name, ns))
    if flux.ok:
        tree.flux_roots[cluster.name] = flux.objects
        return
    entry = cluster.entry
    src = tree.sources.find("Kustomization", entry.name, entry.namespace) if entry.obj is not None else None
    kfile = kustomization_file(folder)
    problems = [*flux.problems, *(_missing_problem(cluster, m) for m in flux.missing)]
    for problem in problems:
        line = line_of(src.data, *problem.keys) if src is not None else None
        tree.findings.error(
            "flux-build",
            f"Kustomization {entry.name}: {problem.message}",
            cluster=cluster.name,
            file=src.file if src is not None else tree.rel(kfile or folder),
            line=line or (src.line if src is not None else None),
        )


def _is_entry(tree: Tree, cluster: Cluster, obj: dict[str, Any]) -> bool:
    """True for the cluster's entry Kustomization (or another that applies the cluster folder itself)."""
    name, namespace = meta(obj)
    if (namespace, name) == cluster.entry.key:
        return True
    return source_ref(obj) == cluster.entry.source and _spec_folder(tree, obj) == cluster.folder.resolve()


def _spec_folder(tree: Tree, obj: dict[str, Any]) -> Path:
    path = text_field(obj, "path") or "./"
    return tree.repo.source_path(path)


def _find_phases(tree: Tree, cluster: Cluster) -> None:
    """The Flux Kustomizations the cluster's folder applies (its entry Kustomization excluded)."""
    folder = cluster.folder.resolve()
    plain = tree.builds.get(folder)
    if cluster.name in tree.flux_roots or (plain is not None and plain.ok):
        objects = [o for o in tree.root_objects(cluster.name) if is_flux_kustomization(o)]
    else:
        # The folder does not build: the Kustomizations written in its own files.
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
    if _is_entry(tree, cluster, obj) or cluster.phase(name, namespace) is not None:
        return
    src = tree.source_of(obj, cluster.name)
    phase = Phase(name, namespace, obj, src=src.data if src else None)
    if src is not None:
        phase.file, phase.line = src.file, src.line
    cluster.phases.append(phase)
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


def _reach_plan(
    tree: Tree, flux_plan: FluxPlan, used: dict[Path, str], plain: set[Path], context: dict[str, str]
) -> bool:
    """Every folder Flux's build of ``flux_plan`` reads; True when it generates the kustomization file."""
    folder, kustomization = flux_plan.folder, flux_plan.kustomization
    if folder is None or kustomization is None:
        return False
    if not isinstance(flux_plan.target, Overlay):
        _reachable(tree, folder, used, plain, context)
        return False
    _reachable(tree, folder, used, plain, context, build_self=False)
    generated = kustomization.data.get("resources", []) if kustomization.generated else []
    for ref in [*generated, *kustomization.data.get("components", [])]:
        if isinstance(ref, str) and (folder / ref).is_dir():
            _reachable(tree, folder / ref, used, plain, context)
    return kustomization.generated


def _plan_phase(
    tree: Tree, cluster: Cluster, phase: Phase, used: dict[Path, str], plain: set[Path], final: bool
) -> bool:
    """Resolve the phase's source and plan Flux's build of it; False while its source may still appear.

    A phase without a source to build from (out of reach, missing, a path not there) is done with no
    objects and its problem reported.
    """
    key = (cluster.name, *phase.key)
    resolved = _resolve_source(tree, cluster, phase)
    if resolved.missing and not final:
        return False
    tree.sources_of[key] = resolved
    if resolved.problem is not None:
        code = "source-offline" if resolved.problem.severity != ERROR else "source-missing"
        _report(tree, cluster, phase, resolved.problem, code)
    if resolved.folder is None:
        phase.built = True
        return True
    flux_plan = plan(phase.obj, resolved.folder)
    tree.plans[key] = flux_plan
    if flux_plan.folder is None:
        for problem in flux_plan.problems:
            if "not found" in problem.message:
                where = "in the repository" if resolved.folder == tree.repo.root else f"in {resolved.label}"
                problem = Problem(
                    f"spec.path {phase.path!r} does not exist {where}", problem.keys, problem.severity
                )
                _report(tree, cluster, phase, problem, "path-missing")
            else:
                _report(tree, cluster, phase, problem, "flux-build")
        phase.built = True
        return True
    phase.folder = flux_plan.folder
    if _reach_plan(tree, flux_plan, used, plain, {"cluster": cluster.name, "phase": phase.name}):
        # valid Flux (it generates one): only the repository's policy may ask for the file
        tree.generated.append((cluster.name, tree.rel(flux_plan.folder), dict(phase.where)))
    return True


def _resolve_source(tree: Tree, cluster: Cluster, phase: Phase) -> Resolved:
    """The folder the phase's ``spec.path`` is read from (this checkout when it names no source)."""
    key = source_ref(phase.obj)
    if key is None:
        return Resolved(tree.repo.root, "this repository")
    resolver = SourceResolver(
        cluster.name,
        tree.repo.root,
        cluster.entry.source,
        lambda kind, namespace, name: _defined(tree, cluster, kind, namespace, name),
        lambda: [o for o in _applied(tree, cluster) if is_generator(o)],
        tree.artifacts,
    )
    return resolver.resolve(key)


def _applied(tree: Tree, cluster: Cluster) -> list[dict[str, Any]]:
    """What the cluster applies so far: its folder's objects and every phase built yet."""
    return [*tree.root_objects(cluster.name), *(o for p in cluster.phases if p.built for o in p.objects)]


def _defined(tree: Tree, cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """An object the cluster applies (one without a namespace matches any)."""
    for obj in _applied(tree, cluster):
        if obj.get("kind") == kind and meta(obj)[0] == name and meta(obj)[1] in ("", namespace):
            return obj
    return None


def _wait(tree: Tree, builder: Builder, targets: set[Target]) -> None:
    """Build ``targets`` (in parallel, in a stable order) into ``tree.builds``."""
    ordered = sorted(targets, key=lambda t: t.sort_key() if isinstance(t, Overlay) else str(t))
    started = [(t, builder.submit(t)) for t in ordered]
    tree.builds.update((t, f.result()) for t, f in started)


def _build_phases(tree: Tree, builder: Builder, roots: dict[str, FluxPlan]) -> None:
    used: dict[Path, str] = {}
    plain: set[Path] = set()
    for cluster in tree.clusters.values():
        _reach_plan(tree, roots[cluster.name], used, plain, {"cluster": cluster.name})
    final = False
    for _ in range(MAX_PASSES):
        if all(p.built for c in tree.clusters.values() for p in c.phases):
            break
        # When nothing moved, the next pass reports what every pending phase waits for.
        final = not _pass(tree, builder, used, plain, final)
    else:
        _pass(tree, builder, used, plain, final=True)
    tree.folders = used
    _build_failed_parts(tree, builder, plain)
    _report_build_failures(tree)
    if tree.only is None:
        _report_orphans(tree)


def _pass(tree: Tree, builder: Builder, used: dict[Path, str], plain: set[Path], final: bool) -> bool:
    """Plan, build and finish every pending phase, and every phase their builds reveal; True when one
    of them moved on.

    A build starts as soon as its phase is planned: a nested Kustomization's build as soon as the
    build that reveals it is finished, so no level of nesting waits for the slowest build of the one
    above. Phases are finished in the order they were found (each finish sees the same phases built
    before it on every run), while the builds of the ones after it go on.
    """
    queue = deque((c, p) for c in tree.clusters.values() for p in c.phases if not p.built)
    moved = False
    for cluster, phase in queue:
        moved = _start_phase(tree, builder, cluster, phase, used, plain, final) or moved
    while queue:
        cluster, phase = queue.popleft()
        flux_plan = tree.plans.get((cluster.name, *phase.key))
        if phase.built or flux_plan is None:
            continue  # done without a build, or waiting for its source
        if flux_plan.target is not None and flux_plan.target not in tree.builds:
            tree.builds[flux_plan.target] = builder.submit(flux_plan.target).result()
        known = len(cluster.phases)
        moved = _fill_phase(tree, cluster, phase, final) or moved
        for found in cluster.phases[known:]:
            _start_phase(tree, builder, cluster, found, used, plain, final)
            queue.append((cluster, found))
    return moved


def _start_phase(
    tree: Tree,
    builder: Builder,
    cluster: Cluster,
    phase: Phase,
    used: dict[Path, str],
    plain: set[Path],
    final: bool,
) -> bool:
    """Plan the phase (once) and start its build; True when it was planned now."""
    key = (cluster.name, *phase.key)
    planned = False
    if key not in tree.plans and not phase.built:
        planned = _plan_phase(tree, cluster, phase, used, plain, final)
    flux_plan = tree.plans.get(key)
    if flux_plan is not None and flux_plan.target is not None and not phase.built:
        builder.submit(flux_plan.target)
    return planned


def _build_failed_parts(tree: Tree, builder: Builder, plain: set[Path]) -> None:
    """Build the folders a failed build reads, as they are, so the failure is reported where it starts
    (when every build succeeds, no folder is built twice).
    """
    parts: dict[Path, str] = {}
    for target, result in list(tree.builds.items()):
        if result.ok:
            continue
        folder = target.folder if isinstance(target, Overlay) else target
        data = target.data() if isinstance(target, Overlay) else read_kustomization(folder)
        for ref, _ in local_refs(data):
            child = (folder / ref).resolve()
            if child.is_dir() and not is_remote(ref):
                reachable_folders(child, parts)
    _wait(tree, builder, {p for p in parts if p in plain and p not in tree.builds})


def _fill_phase(tree: Tree, cluster: Cluster, phase: Phase, final: bool) -> bool:
    """Finish the phase's Flux build; False while it waits for a substituteFrom object (not ``final``)."""
    flux_plan = tree.plans[(cluster.name, *phase.key)]
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
    tree's files (outside other clusters' folders, the same namespace or none), which bootstrap or an
    operator may have applied by hand.
    """
    for obj in _applied(tree, cluster):
        if obj.get("kind") == kind and meta(obj) == (name, namespace):
            return obj
    others = [
        tree.repo.rel(f) + "/"
        for n, f in tree.discovered.items()
        if n != cluster.name and not cluster.folder.is_relative_to(f)
    ]
    for docs in tree.sources.docs.values():
        for doc in docs:
            if doc.kind != kind or doc.name != name or doc.namespace not in ("", namespace):
                continue
            if any(doc.file.startswith(o) for o in others):
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
            flux_plan = tree.plans.get((cluster.name, *phase.key))
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
    """Kustomization folders under ``fluxops.layout.folders`` that no build reads (none without it)."""
    used = set(tree.folders)
    for rel in tree.layout.folders:
        for kfile in sorted((tree.repo.root / rel).rglob("kustomization.yaml")):
            folder = kfile.parent.resolve()
            if folder not in used:
                tree.findings.warning(
                    "unused",
                    f"{tree.rel(folder)} is built by no phase of any cluster (remove it or reference it)",
                    file=tree.rel(kfile),
                )
