"""The kustomization file kustomize-controller builds: generated when the folder has none, then amended.

Flux 2.7's kustomize-controller (v1.7) calls fluxcd/pkg/kustomize v1.24 ``Generator.WriteFile`` on
``spec.path`` before building (kustomize/kustomize_generator.go):

1. A folder without ``kustomization.yaml`` / ``kustomization.yml`` / ``Kustomization`` gets one listing,
   in walk order (lexical, depth first), every ``.yaml``/``.yml`` file below it and every sub-folder
   that holds a kustomization file (not descended into); an empty folder gets
   ``namespace: _placeholder`` so kustomize accepts it. Files source-controller leaves out of a
   GitRepository artifact by default (sourceignore's VCS, CI and extra patterns) are not there to list.
2. The file (found or generated) is read into kustomize's Kustomization type, which drops fields
   that type does not have; a found file without ``resources`` gets ``buildMetadata:
   [originAnnotations]`` (Flux's guard against "kustomization.yaml is empty").
3. The Flux Kustomization's fields are written into it: ``targetNamespace`` replaces ``namespace``,
   ``namePrefix`` / ``nameSuffix`` replace the file's, ``patches`` are appended after the file's,
   ``components`` are appended (local relative paths only; missing ones skipped with
   ``ignoreMissingComponents``), and each of ``images`` replaces the file's entry of the same name or
   is appended.

kustomize then builds the folder, so its own transformer order applies: components, then the
file's patches and Flux's, namespace, prefix/suffix, labels, annotations, images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.clusters import kustomization_file
from fluxops.layout.flux_spec import Problem, list_field, spec_of, text_field
from fluxops.layout.kustomize import read_kustomization

KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
PLACEHOLDER_NAMESPACE = "_placeholder"
MANIFEST_SUFFIXES = (".yaml", ".yml")

# The fields of kustomize's Kustomization type (sigs.k8s.io/kustomize/api types/kustomization.go);
# Flux reads the file into it, so any other top-level field is dropped.
KUSTOMIZATION_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "metadata",
        "openapi",
        "namePrefix",
        "nameSuffix",
        "namespace",
        "commonLabels",
        "labels",
        "commonAnnotations",
        "patchesStrategicMerge",
        "patchesJson6902",
        "patches",
        "images",
        "imageTags",
        "replacements",
        "replicas",
        "vars",
        "sortOptions",
        "resources",
        "components",
        "crds",
        "bases",
        "configMapGenerator",
        "secretGenerator",
        "helmGlobals",
        "helmCharts",
        "helmChartInflationGenerator",
        "generatorOptions",
        "configurations",
        "generators",
        "transformers",
        "validators",
        "inventory",
        "buildMetadata",
    }
)

# What source-controller leaves out of every GitRepository artifact unless spec.ignore replaces it
# (fluxcd/pkg sourceignore: ExcludeVCS, ExcludeCI, ExcludeExtra; the ExcludeExt images and archives
# are no manifests). A name without a slash matches at any depth, as in .gitignore.
IGNORED_FOLDERS = frozenset({".git", ".github", ".circleci"})
IGNORED_FILES = frozenset(
    {
        ".travis.yml",
        ".gitlab-ci.yml",
        "appveyor.yml",
        ".drone.yml",
        "cloudbuild.yaml",
        "codeship-services.yml",
        "codeship-steps.yml",
        ".goreleaser.yml",
        ".sops.yaml",
        ".flux.yaml",
    }
)

# Prefixes kustomize treats as remote (fluxcd/pkg IsLocalRelativePath, after kustomize's repospec).
_REMOTE_PREFIXES = ("git::", "gh:", "ssh://", "https://", "http://", "git@", "github.com:", "github.com/")
_SELECTOR_FIELDS = ("group", "version", "kind", "name", "namespace", "labelSelector", "annotationSelector")


@dataclass
class FluxKustomization:
    """The kustomization file Flux builds ``folder`` with.

    ``amended`` is False when building the folder as it is gives the same result (nothing generated,
    dropped or added), so the plain build and its cache serve.
    """

    folder: Path
    filename: str
    data: dict[str, Any]
    generated: bool = False
    amended: bool = False
    dropped: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _extension(name: str) -> str:
    """Go's filepath.Ext: from the last dot (so ``.yaml`` alone has the extension ``.yaml``)."""
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def scan_manifests(folder: Path) -> list[str]:
    """The ``resources`` Flux generates for a folder without a kustomization file."""
    found: list[str] = []

    def walk(current: Path, prefix: str) -> None:
        with os.scandir(current) as scan:
            entries = sorted(scan, key=lambda e: e.name.encode("utf-8", "surrogateescape"))
        for entry in entries:
            rel = f"{prefix}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                if entry.name in IGNORED_FOLDERS:
                    continue
                if kustomization_file(Path(entry.path)) is not None:
                    found.append(rel)
                else:
                    walk(Path(entry.path), rel)
            elif _extension(entry.name) in MANIFEST_SUFFIXES and entry.name not in IGNORED_FILES:
                found.append(rel)

    walk(folder, ".")
    return found


def is_local_relative(path: str) -> bool:
    """True for a component path Flux accepts (fluxcd/pkg kustomize IsLocalRelativePath)."""
    lower = path.lower()
    if any(len(p) < len(path) and lower.startswith(p) for p in _REMOTE_PREFIXES):
        return False
    return not (os.path.isabs(path) or os.path.isabs(lower.removeprefix("file://")))


def flux_kustomization(ks: dict[str, Any], folder: Path) -> FluxKustomization:
    """The kustomization file kustomize-controller writes in ``folder`` for the Kustomization ``ks``."""
    kfile = kustomization_file(folder)
    if kfile is None:
        resources = scan_manifests(folder)
        data: dict[str, Any] = {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization"}
        if resources:
            data["resources"] = resources
        else:
            data["namespace"] = PLACEHOLDER_NAMESPACE
        result = FluxKustomization(folder, "kustomization.yaml", data, generated=True, amended=True)
    else:
        parsed = read_kustomization(folder)
        if not isinstance(parsed, dict):
            # Unparsable: kustomize's own build of the folder reports it.
            return FluxKustomization(folder, kfile.name, {})
        data = {k: v for k, v in parsed.items() if k in KUSTOMIZATION_FIELDS}
        result = FluxKustomization(folder, kfile.name, data, dropped=sorted(set(parsed) - set(data)))
        result.amended = bool(result.dropped)
        if not data.get("resources"):
            data["buildMetadata"] = ["originAnnotations"]
            result.amended = True
    _amend(ks, result)
    return result


def _amend(ks: dict[str, Any], result: FluxKustomization) -> None:
    """Write the Kustomization's own fields into the file, in the generator's order."""
    data, before = result.data, repr(result.data)
    if text_field(ks, "targetNamespace"):
        data["namespace"] = text_field(ks, "targetNamespace")
    for name in ("namePrefix", "nameSuffix"):
        if text_field(ks, name):
            data[name] = text_field(ks, name)
    for i, patch in enumerate(list_field(ks, "patches")):
        if not isinstance(patch, dict):
            result.problems.append(Problem(f"patch {i} is not a mapping", ("spec", "patches", i)))
            continue
        entry: dict[str, Any] = {"patch": str(patch.get("patch") or "")}
        target = patch.get("target")
        if isinstance(target, dict):
            entry["target"] = {k: target[k] for k in _SELECTOR_FIELDS if target.get(k)}
        data.setdefault("patches", []).append(entry)
    _add_components(ks, result)
    for image in list_field(ks, "images"):
        if isinstance(image, dict):
            _set_image(data.setdefault("images", []), image)
    result.amended = result.amended or repr(data) != before


def _add_components(ks: dict[str, Any], result: FluxKustomization) -> None:
    ignore_missing = spec_of(ks).get("ignoreMissingComponents") is True
    for i, component in enumerate(list_field(ks, "components")):
        where = ("spec", "components", i)
        if not isinstance(component, str) or not is_local_relative(component):
            result.problems.append(Problem(f"component path '{component}' must be local and relative", where))
        elif (result.folder / component).exists():
            result.data.setdefault("components", []).append(component)
        elif not ignore_missing:
            result.problems.append(
                Problem(f"component path '{component}' does not exist (no ignoreMissingComponents)", where)
            )


def _set_image(images: list[Any], image: dict[str, Any]) -> None:
    """Flux 2.7 replaces the file's entry of the same name whole (later Flux merges the fields)."""
    entry = {k: image[k] for k in ("name", "newName", "newTag", "digest") if image.get(k)}
    for n, old in enumerate(images):
        if isinstance(old, dict) and old.get("name") == image.get("name"):
            images[n] = entry
            return
    images.append(entry)
