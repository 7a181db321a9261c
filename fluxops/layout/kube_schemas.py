"""Kubernetes' own kinds: what each release serves (group, version, kind) and its strict schemas.

The data is kubernetes-validate's: the OpenAPI of every Kubernetes release it ships, as JSON Schema,
in its strict variant (unknown fields are errors, as with kubeconform ``-strict``). Which kinds a
release serves is read from the ``x-kubernetes-group-version-kind`` of its definitions, so a group
is never guessed from its name. Everything is loaded on first use and kept for the process.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

DATA_PACKAGE = "kubernetes_validate"
DATA_DIR = "kubernetes-json-schema"
DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
# Served by every k3s server without a CRD from the tree (k3s installs these CRDs itself).
K3S_KINDS: dict[tuple[str, str], frozenset[str]] = {
    ("helm.cattle.io", "v1"): frozenset({"HelmChart", "HelmChartConfig"}),
    ("k3s.cattle.io", "v1"): frozenset({"Addon", "ETCDSnapshotFile"}),
}
K3S_GROUPS = frozenset(g for g, _ in K3S_KINDS)

Served = dict[tuple[str, str], frozenset[str]]
# One kind per definition, as the files write it (indented JSON).
GVK = re.compile(
    r'"x-kubernetes-group-version-kind": \[\s*\{\s*"group": "([^"]*)",\s*"kind": "([^"]*)",'
    r'\s*"version": "([^"]*)"\s*\}\s*\]'
)


def release_key(release: str) -> tuple[int, int]:
    """``"1.33"`` as (1, 33), for ordering."""
    major, _, minor = release.partition(".")
    return int(major), int(minor)


@functools.cache
def data_dir() -> Path:
    """kubernetes-validate's schema folder, found without importing the package (it imports jsonschema)."""
    spec = importlib.util.find_spec(DATA_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise RuntimeError("kubernetes-validate is not installed; install fluxops with its dependencies")
    return Path(locations[0]) / DATA_DIR


@functools.cache
def releases() -> tuple[str, ...]:
    """The Kubernetes releases with schemas here (``"1.25"`` ... ), oldest first."""
    found = set()
    for entry in data_dir().iterdir():
        name = entry.name
        if name.startswith("v") and name.endswith("-local-strict"):
            parts = name[1:].split("-")[0].split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                found.add(f"{int(parts[0])}.{int(parts[1])}")
    return tuple(sorted(found, key=release_key))


@functools.cache
def data_version() -> str:
    """The version of the schema data (the kubernetes-validate distribution)."""
    try:
        return metadata.version("kubernetes-validate")
    except metadata.PackageNotFoundError:
        return "unknown"


def choose(wanted: str | None) -> tuple[str, str | None]:
    """The release to check against for a cluster running ``wanted``, and why it differs (if it does).

    Unknown: the newest release here. Newer than the newest or older than the oldest: the nearest
    one, with a note saying so.
    """
    known = releases()
    if not known:
        raise RuntimeError(
            "kubernetes-validate ships no schemas; reinstall it (pip install kubernetes-validate)"
        )
    if wanted is None or wanted in known:
        return wanted or known[-1], None
    key = release_key(wanted)
    source = f"kubernetes-validate {data_version()}"
    if key > release_key(known[-1]):
        return known[-1], (
            f"the cluster runs Kubernetes {wanted}, but the newest schemas here are {known[-1]} ({source}); "
            f"checked against {known[-1]} (upgrade kubernetes-validate for {wanted}'s APIs)"
        )
    if key < release_key(known[0]):
        return known[0], (
            f"the cluster runs Kubernetes {wanted}, older than the oldest schemas here "
            f"({known[0]}, {source}); checked against {known[0]}"
        )
    older = [r for r in known if release_key(r) <= key]
    return older[-1], f"no schemas for Kubernetes {wanted} here ({source}); checked against {older[-1]}"


def _definitions_file(release: str) -> Path:
    return data_dir() / f"v{release}.0-local-strict" / "_definitions.json"


@functools.cache
def served(release: str) -> Served:
    """(group, version) -> the kinds ``release`` serves there.

    Read with a pattern over the file rather than parsed: cheap enough to ask of every release.
    Definitions naming several kinds (DeleteOptions, WatchEvent: one per group) are left out.
    """
    found: dict[tuple[str, str], set[str]] = {}
    text = _definitions_file(release).read_text(encoding="utf-8")
    for group, kind, version in GVK.findall(text):
        found.setdefault((group, version), set()).add(kind)
    return {key: frozenset(kinds) for key, kinds in found.items()}


@functools.cache
def groups(release: str) -> frozenset[str]:
    """Every API group ``release`` serves (the core group is ``""``)."""
    return frozenset(g for g, _ in served(release))


def versions_of(release: str, group: str, kind: str) -> list[str]:
    """The apiVersions under which ``release`` serves ``kind`` of ``group``, GA first."""
    found = [v for (g, v), kinds in served(release).items() if g == group and kind in kinds]
    return sorted(found, key=lambda v: ("alpha" in v, "beta" in v, v))


@functools.cache
def serving(group: str, kind: str) -> tuple[str, ...]:
    """Every release here that serves ``kind`` of ``group`` (in any version)."""
    return tuple(r for r in releases() if versions_of(r, group, kind))


@functools.cache
def _definitions(release: str) -> dict[str, Any]:
    data = json.loads(_definitions_file(release).read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


@functools.cache
def _names(release: str) -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name."""
    found = {}
    for name, definition in (_definitions(release).get("$defs") or {}).items():
        gvks = definition.get("x-kubernetes-group-version-kind") if isinstance(definition, dict) else None
        if isinstance(gvks, list) and len(gvks) == 1:
            found[(gvks[0]["group"], gvks[0]["version"], gvks[0]["kind"])] = name
    return found


@functools.cache
def _registry(release: str) -> Any:
    from referencing import Registry, Resource

    return Resource.from_contents(_definitions(release)) @ Registry()


@functools.cache
def validator(release: str, group: str, version: str, kind: str) -> Any:
    """A strict validator for ``kind`` at ``group/version`` in ``release`` (None when not served)."""
    from jsonschema import Draft202012Validator

    name = _names(release).get((group, version, kind))
    if name is None:
        return None
    schema = {"$ref": f"{DEFINITIONS_ID}#/$defs/{name}"}
    return Draft202012Validator(schema, registry=_registry(release))
