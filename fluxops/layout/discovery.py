"""Which clusters a repository holds, found the way Flux finds them: from each cluster's entry Kustomization.

Flux reconciles a cluster from one entry Kustomization (``flux bootstrap`` writes it, named
``flux-system``, into ``<cluster folder>/flux-system/gotk-sync.yaml``); its ``spec.path`` is the
cluster folder, whose manifests apply everything else. The rules, in order (the first that finds
anything wins; docs/validate.md says the same):

1. **Setting.** ``fluxops.layout.clusters`` maps names to folders: exactly those clusters.
2. **Entry Kustomizations.** A Flux Kustomization whose ``sourceRef`` is a GitRepository and which is
   named ``flux-system`` (bootstrap's) or whose GitRepository is defined in the same file; and a
   Flux Operator FluxInstance's ``spec.sync`` (a GitRepository ``path``). One whose file lies in
   another entry's cluster folder is applied by that one, not an entry.
3. **Top-level Kustomizations.** For repositories whose entry is not in the tree (it lives only in
   the cluster, as in fluxcd/flux2-kustomize-helm-example): every Flux Kustomization that no other
   Kustomization applies, i.e. whose file is in no GitRepository-sourced Kustomization's
   ``spec.path`` folder. Its cluster folder is the child of the nearest ``clusters`` folder above
   the file, else the file's folder.

A cluster is named after its folder (the repository folder's name for the root); folders with the same
name are named by their path. Only files under ``fluxops.layout.folders`` are read, when it is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.errors import LayoutError
from fluxops.layout.flux_build import source_folder
from fluxops.layout.model import BOOTSTRAP_NAME, Cluster, Entry, group_of, is_flux_kustomization, meta
from fluxops.layout.sources import SourceDoc, Sources
from fluxops.settings import LayoutSettings

FLUX_OPERATOR_GROUP = "fluxcd.controlplane.io"
SOURCE_GROUP = "source.toolkit.fluxcd.io"
CLUSTERS_FOLDER = "clusters"

LOOKED_FOR = (
    "an entry Kustomization (a Flux Kustomization named flux-system with a GitRepository sourceRef, as "
    "`flux bootstrap` writes in <cluster>/flux-system/gotk-sync.yaml, or one whose GitRepository is in "
    "the same file; a FluxInstance's spec.sync.path), then Flux Kustomizations that no other "
    "Kustomization applies"
)


@dataclass
class Discovery:
    """The clusters found (in order), and problems with entries that could not become clusters."""

    clusters: list[Cluster] = field(default_factory=list)
    problems: list[tuple[str, int | None, str]] = field(default_factory=list)  # (file, line, message)


@dataclass(frozen=True)
class _Candidate:
    path: Path  # the file declaring the entry
    folder: Path  # the cluster folder it applies
    entry: Entry


def discover(root: Path, sources: Sources, settings: LayoutSettings) -> Discovery:
    """The clusters of the repository at ``root`` (its files parsed in ``sources``); LayoutError if none."""
    root = root.resolve()
    found = Discovery()
    candidates = _entries(root, sources, found)
    if settings.clusters:
        by_folder = {c.folder: c.entry for c in candidates}
        for name, rel in settings.clusters.items():
            folder = (root / rel).resolve()
            if not folder.is_dir() or not folder.is_relative_to(root):
                raise LayoutError(
                    f"fluxops.layout.clusters.{name}: {rel!r} is not a folder of {root}; name each cluster's "
                    "folder relative to the repository (e.g. lab: clusters/lab)"
                )
            entry = by_folder.get(folder) or Entry(how="setting")
            found.clusters.append(Cluster(name, folder, entry=entry))
        return found
    folders = [(c.folder, c.entry) for c in _outermost(candidates)]
    if not folders:
        folders = [(folder, Entry(how="top-level")) for folder in _top_level_folders(root, sources)]
    if not folders:
        where = f" (folders {', '.join(settings.folders)})" if settings.folders else ""
        raise LayoutError(
            f"no Flux cluster found in {root}{where}: looked for {LOOKED_FOR}; found none. Name the cluster "
            "folders with the fluxops.layout.clusters setting (name: folder)"
        )
    names = _names(root, [f for f, _ in folders])
    found.clusters = [Cluster(n, f, entry=e) for n, (f, e) in zip(names, folders, strict=True)]
    return found


def sources_scope(root: Path, settings: LayoutSettings) -> list[str]:
    """The folders to read manifests from, relative to ``root``: ``fluxops.layout.folders``, else ``.``."""
    return list(settings.folders) or ["."]


def _docs(sources: Sources) -> Iterator[tuple[str, list[SourceDoc]]]:
    for file in sorted(sources.docs):
        yield file, sources.docs[file]


def _source_ref(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of a Kustomization's sourceRef; the namespace defaults to its own."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    ref = spec.get("sourceRef")
    if not isinstance(ref, dict):
        return None
    return (str(ref.get("kind", "")), str(ref.get("namespace") or meta(obj)[1]), str(ref.get("name", "")))


def _path_of(obj: dict[str, Any]) -> str:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    path = spec.get("path")
    return path if isinstance(path, str) else ""


def _entries(root: Path, sources: Sources, found: Discovery) -> list[_Candidate]:
    """Every entry Kustomization and FluxInstance sync in the files, with its cluster folder."""
    out: list[_Candidate] = []
    for file, docs in _docs(sources):
        repos = {(d.namespace, d.name) for d in docs if d.kind == "GitRepository" and _is_source(d.data)}
        for doc in docs:
            declared = _entry_of(doc, repos)
            if declared is None:
                continue
            entry, path = declared
            folder = source_folder(root, path)
            if not folder.is_dir():
                message = f"entry {doc.kind} {doc.name}: its path {path!r} is not a folder of the repository"
                found.problems.append((file, doc.line, message))
                continue
            out.append(_Candidate((root / file).resolve(), folder.resolve(), entry))
    return out


def _is_source(obj: Any) -> bool:
    return isinstance(obj, dict) and group_of(str(obj.get("apiVersion", ""))) == SOURCE_GROUP


def _entry_of(doc: SourceDoc, repos: set[tuple[str, str]]) -> tuple[Entry, str] | None:
    """The entry a document declares (a bootstrap-like Kustomization, a FluxInstance's sync) and its path."""
    obj = doc.data
    if is_flux_kustomization(obj):
        ref = _source_ref(obj)
        if ref is None or ref[0] != "GitRepository":
            return None
        if doc.name != BOOTSTRAP_NAME and (ref[1], ref[2]) not in repos:
            return None
        return Entry(doc.name, doc.namespace, doc.file, doc.line, obj, ref, "entry"), _path_of(obj)
    if (
        doc.kind == "FluxInstance"
        and isinstance(obj, dict)
        and group_of(str(obj.get("apiVersion"))) == (FLUX_OPERATOR_GROUP)
    ):
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        sync = spec.get("sync") if isinstance(spec.get("sync"), dict) else {}
        if sync.get("kind") != "GitRepository" or not isinstance(sync.get("path"), str):
            return None
        namespace = doc.namespace or BOOTSTRAP_NAME
        name = str(sync.get("name") or namespace)
        source = ("GitRepository", namespace, name)
        return Entry(name, namespace, doc.file, doc.line, None, source, "flux-instance"), sync["path"]
    return None


def _outermost(candidates: list[_Candidate]) -> list[_Candidate]:
    """Entries not applied by another entry, one per folder, in file order."""
    out: list[_Candidate] = []
    seen: set[Path] = set()
    for c in candidates:
        applied = any(o.folder != c.folder and c.path.is_relative_to(o.folder) for o in candidates)
        if applied or c.folder in seen:
            continue
        seen.add(c.folder)
        out.append(c)
    return out


def _top_level_folders(root: Path, sources: Sources) -> list[Path]:
    """Cluster folders of rule 3: where the Kustomizations no other Kustomization applies live."""
    kustomizations = [(f, d) for f, docs in _docs(sources) for d in docs if is_flux_kustomization(d.data)]
    applying: list[tuple[SourceDoc, Path]] = []
    for _, doc in kustomizations:
        ref = _source_ref(doc.data)
        if ref is not None and ref[0] == "GitRepository":
            folder = source_folder(root, _path_of(doc.data))
            if folder.is_dir():
                applying.append((doc, folder.resolve()))
    folders: list[Path] = []
    for file, doc in kustomizations:
        path = (root / file).resolve()
        if any(other is not doc and path.is_relative_to(folder) for other, folder in applying):
            continue
        folder = _cluster_folder(root, path.parent)
        if folder not in folders:
            folders.append(folder)
    return folders


def _cluster_folder(root: Path, folder: Path) -> Path:
    """The child of the nearest ``clusters`` folder above ``folder`` (inside ``root``), else ``folder``."""
    current = folder
    while current != root and current.is_relative_to(root):
        if current.parent.name == CLUSTERS_FOLDER and current.parent != root.parent:
            return current
        current = current.parent
    return folder


def _names(root: Path, folders: list[Path]) -> list[str]:
    """A name per folder: its own name, or its path where two folders share a name."""
    short = [f.name if f != root else root.name for f in folders]
    out = []
    for folder, name in zip(folders, short, strict=True):
        if short.count(name) > 1 and folder != root:
            name = folder.relative_to(root).as_posix()
        out.append(name)
    return out
