"""Where a Flux Kustomization reads its ``spec.path`` from: its ``sourceRef``, resolved as Flux resolves it.

- The repository's own GitRepository (the entry Kustomization's source; bootstrap's
  ``flux-system/flux-system`` when the tree does not hold the entry), or another GitRepository with
  the same ``spec.url``: this checkout.
- An ExternalArtifact that an ArtifactGenerator of the cluster produces: the generator's copy
  operations applied to its sources (:mod:`fluxops.layout.artifacts`), each source resolved the same way.
- Any other GitRepository, an OCIRepository, a Bucket, or an ExternalArtifact no generator in the tree
  produces: out of reach offline; the Kustomization is not built (a warning naming the source).
- A source the cluster does not define: Flux waits for it forever (an error).

``sourceRef.namespace`` defaults to the Kustomization's namespace, as in Flux.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxops.layout.artifacts import ArtifactStore, CopyError
from fluxops.layout.flux_spec import ERROR, WARNING, Problem, spec_of
from fluxops.layout.model import group_of, meta

SourceKey = tuple[str, str, str]  # (kind, namespace, name)
KUSTOMIZATION_SOURCES = ("GitRepository", "OCIRepository", "Bucket", "ExternalArtifact")
GENERATOR_KIND = "ArtifactGenerator"
GENERATOR_GROUP = "source.extensions.fluxcd.io"
MAX_DEPTH = 5

# Finds an object the cluster defines by (kind, namespace, name); None when it does not.
Find = Callable[[str, str, str], dict[str, Any] | None]
# Every ArtifactGenerator the cluster defines.
Generators = Callable[[], list[dict[str, Any]]]


@dataclass(frozen=True)
class Resolved:
    """A source's folder, or why there is none (``problem``); ``label`` names the source in messages."""

    folder: Path | None
    label: str
    problem: Problem | None = None
    missing: bool = False  # not defined (yet): a later build round may define it


def is_generator(obj: dict[str, Any]) -> bool:
    """True for an ArtifactGenerator (Flux 2.7's source-watcher)."""
    return obj.get("kind") == GENERATOR_KIND and group_of(str(obj.get("apiVersion", ""))) == GENERATOR_GROUP


def source_ref(ks: dict[str, Any]) -> SourceKey | None:
    """(kind, namespace, name) of a Kustomization's sourceRef (namespace defaulted), None without one."""
    ref = spec_of(ks).get("sourceRef")
    if not isinstance(ref, dict) or not ref.get("kind") or not ref.get("name"):
        return None
    return (str(ref["kind"]), str(ref.get("namespace") or meta(ks)[1]), str(ref["name"]))


class SourceResolver:
    """Resolves source references of one cluster against what it defines."""

    def __init__(
        self,
        cluster: str,
        root: Path,
        own: SourceKey,
        find: Find,
        generators: Generators,
        store: ArtifactStore,
    ) -> None:
        self.cluster = cluster
        self.root = root
        self.own = own
        self.find = find
        self.generators = generators
        self.store = store

    def resolve(self, key: SourceKey, depth: int = 0) -> Resolved:
        """The folder of the source ``key``."""
        kind, namespace, name = key
        label = f"{kind} {namespace}/{name}"
        where = ("spec", "sourceRef")
        if kind not in KUSTOMIZATION_SOURCES:
            message = f"sourceRef kind {kind!r} is not a source (one of {', '.join(KUSTOMIZATION_SOURCES)})"
            return Resolved(None, label, Problem(message, where))
        if key == self.own:
            return Resolved(self.root, f"{label} (this repository)")
        obj = self.find(kind, namespace, name)
        if kind == "ExternalArtifact":
            generated = self._artifact(key, depth)
            if generated is not None:
                return generated
        if obj is None:
            return Resolved(None, label, Problem(f"its source {label} is defined nowhere", where), True)
        if kind == "GitRepository" and self._same_repository(obj):
            return Resolved(self.root, f"{label} (this repository)")
        detail = f" ({obj['spec']['url']})" if isinstance((obj.get("spec") or {}).get("url"), str) else ""
        message = (
            f"its source {label}{detail} is out of reach offline; this Kustomization is not built or checked"
        )
        return Resolved(None, label, Problem(message, where, WARNING))

    def _same_repository(self, obj: dict[str, Any]) -> bool:
        own = self.find(*self.own)
        url = (obj.get("spec") or {}).get("url")
        return own is not None and bool(url) and (own.get("spec") or {}).get("url") == url

    def _artifact(self, key: SourceKey, depth: int) -> Resolved | None:
        """The ExternalArtifact ``key`` as a generator of the cluster stages it; None if none produces it."""
        _, namespace, name = key
        label = f"ExternalArtifact {namespace}/{name}"
        for generator in self.generators():
            gen_name, gen_namespace = meta(generator)
            if (gen_namespace or "") != namespace:
                continue
            spec = spec_of(generator)
            artifacts = spec.get("artifacts") if isinstance(spec.get("artifacts"), list) else []
            artifact = next((a for a in artifacts if isinstance(a, dict) and a.get("name") == name), None)
            if artifact is None:
                continue
            label = f"{label} (ArtifactGenerator {namespace}/{gen_name})"
            folders, problem = self._aliases(spec, namespace, depth)
            if problem is not None:
                return Resolved(None, label, problem)
            try:
                staged = self.store.stage((self.cluster, namespace, name), artifact, folders)
            except CopyError as exc:
                message = f"ArtifactGenerator {namespace}/{gen_name} cannot produce {name}: {exc}"
                return Resolved(None, label, Problem(message, ("spec", "sourceRef")))
            return Resolved(staged.folder, label)
        return None

    def _aliases(
        self, spec: dict[str, Any], namespace: str, depth: int
    ) -> tuple[dict[str, Path], Problem | None]:
        """Each source alias of a generator and its folder; a problem when one is out of reach."""
        folders: dict[str, Path] = {}
        sources = spec.get("sources") if isinstance(spec.get("sources"), list) else []
        for source in sources:
            if not isinstance(source, dict):
                continue
            key = (
                str(source.get("kind", "")),
                str(source.get("namespace") or namespace),
                str(source.get("name")),
            )
            if depth >= MAX_DEPTH:
                return folders, Problem(
                    f"ExternalArtifacts nest deeper than {MAX_DEPTH}", ("spec", "sourceRef")
                )
            resolved = self.resolve(key, depth + 1)
            if resolved.folder is None:
                reason = resolved.problem.message if resolved.problem else "out of reach"
                severity = resolved.problem.severity if resolved.problem else WARNING
                message = (
                    f"the generator's source @{source.get('alias')}: {reason.removeprefix('its source ')}"
                )
                return folders, Problem(
                    message, ("spec", "sourceRef"), severity if not resolved.missing else ERROR
                )
            folders[str(source.get("alias", ""))] = resolved.folder
        return folders, None
