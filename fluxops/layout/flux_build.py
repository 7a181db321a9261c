"""Build a Flux Kustomization the way kustomize-controller does, offline.

The order is Flux 2.7's (kustomize-controller v1.7, ``reconcile`` -> ``generate`` -> ``build`` ->
``apply``):

1. ``spec.path`` is joined to the source root (a ``..`` cannot leave it, as with securejoin);
2. the kustomization file is generated when the folder has none, then amended with the
   Kustomization's ``targetNamespace``, ``namePrefix``/``nameSuffix``, ``patches``, ``components``
   and ``images`` (:mod:`fluxops.layout.flux_generator`);
3. the real kustomize builds the folder with load restrictions off (:mod:`fluxops.layout.kustomize`;
   a folder Flux leaves as it is shares the plain build and its cache);
4. every object needs an apiVersion, a kind and a name;
5. SOPS-encrypted objects stay encrypted (Flux decrypts them here; offline they are kept as they
   are, and substitution still reaches their clear fields);
6. ``postBuild`` substitution, then ``commonMetadata`` (:mod:`fluxops.layout.postbuild`).

:func:`flux_build` does all of it for one Kustomization; :func:`plan` and :func:`finish` split it
around the kustomize build so many Kustomizations build in parallel through one
:class:`~fluxops.layout.kustomize.Builder`.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.layout.flux_generator import FluxKustomization, flux_kustomization
from fluxops.layout.flux_spec import Problem, label_of, spec_of
from fluxops.layout.kustomize import Builder, BuildResult, Target
from fluxops.layout.overlay import Overlay
from fluxops.layout.postbuild import Lookup, MissingSource, post_build


@dataclass
class FluxPlan:
    """What a Kustomization builds: its folder, the kustomize target, and problems found before."""

    ks: dict[str, Any]
    folder: Path | None = None
    target: Target | None = None
    kustomization: FluxKustomization | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class FluxBuild:
    """The objects Flux applies for a Kustomization, or why it applies none.

    ``missing`` lists required ``substituteFrom`` objects that were not found (the build fails);
    ``build_failed`` says kustomize itself failed (its message is the one problem).
    """

    ok: bool
    objects: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    missing: list[MissingSource] = field(default_factory=list)
    cached: bool = False
    build_failed: bool = False


def source_folder(root: Path, path: str) -> Path:
    """``spec.path`` inside the source ``root``; ``..`` stops at the root (securejoin)."""
    inside = posixpath.normpath("/" + (path or "./")).lstrip("/")
    return (root / inside) if inside not in ("", ".") else root


def plan(ks: dict[str, Any], root: Path) -> FluxPlan:
    """Find the folder and write the kustomization file Flux builds it with."""
    result = FluxPlan(ks)
    root = root.resolve()
    spec_path = spec_of(ks).get("path")
    folder = source_folder(root, spec_path if isinstance(spec_path, str) else "")
    if not folder.is_dir():
        result.problems.append(Problem(f"kustomization path not found: {spec_path!r}", ("spec", "path")))
        return result
    folder = folder.resolve()
    if not folder.is_relative_to(root):
        result.problems.append(Problem(f"spec.path {spec_path!r} leads outside the source", ("spec", "path")))
        return result
    kustomization = flux_kustomization(ks, folder)
    result.folder, result.kustomization = folder, kustomization
    result.problems.extend(kustomization.problems)
    if any(p.severity == "error" for p in kustomization.problems):
        return result  # Flux stops before building
    if kustomization.amended:
        result.target = Overlay(folder, root, kustomization.filename, json.dumps(kustomization.data))
    else:
        result.target = folder
    return result


def finish(
    flux_plan: FluxPlan, built: BuildResult | None, lookup: Lookup | None = None, *, strict: bool = False
) -> FluxBuild:
    """The objects Flux applies, from the kustomize build of ``flux_plan.target``.

    ``lookup`` finds substituteFrom objects (none are found without it); ``strict`` is Flux's
    StrictPostBuildSubstitutions feature gate.
    """
    problems = [p for p in flux_plan.problems if p.severity == "error"]
    if problems or built is None:
        return FluxBuild(False, problems=problems or [Problem("nothing to build", ("spec", "path"))])
    if not built.ok:
        failed = Problem(f"kustomize build failed: {built.error}", ("spec", "path"))
        return FluxBuild(False, problems=[failed], build_failed=True)
    for obj in built.objects:
        md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        if not (obj.get("apiVersion") and obj.get("kind") and md.get("name")):
            message = f"failed to decode Kubernetes apiVersion, kind and name from: {label_of(obj)}"
            return FluxBuild(False, problems=[Problem(message, ("spec", "path"))])
    post = post_build(flux_plan.ks, built.objects, built.texts, lookup or _nothing, strict=strict)
    ok = not post.problems and not post.missing
    return FluxBuild(ok, post.objects if ok else [], post.problems, post.missing, built.cached)


def flux_build(
    ks: dict[str, Any],
    root: Path,
    builder: Builder,
    lookup: Lookup | None = None,
    *,
    strict: bool = False,
) -> FluxBuild:
    """Build the Flux Kustomization ``ks`` (a parsed ``kustomize.toolkit.fluxcd.io/v1`` object) whose
    source is the folder ``root``, as kustomize-controller builds it; see the module documentation.
    """
    flux_plan = plan(ks, root)
    built = builder.build(flux_plan.target) if flux_plan.target is not None else None
    return finish(flux_plan, built, lookup, strict=strict)


def lookup_in(objects: list[dict[str, Any]]) -> Lookup:
    """A lookup over ``objects`` by kind, name and namespace (the first match wins)."""
    index: dict[tuple[str, str, str], dict[str, Any]] = {}
    for obj in objects:
        md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        key = (str(obj.get("kind", "")), str(md.get("name", "")), str(md.get("namespace") or ""))
        index.setdefault(key, obj)

    def lookup(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return index.get((kind, name, namespace))

    return lookup


def _nothing(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    return None
