"""Regenerate the Flux schema data (fluxops/layout/schema_data/flux) from Flux's CRD YAML.

    .venv/bin/python scripts/refresh_schemas.py --release v2.7.5
    .venv/bin/python scripts/refresh_schemas.py --release v2.7.5 path/to/*.yaml

Without files, the CRDs of every component of that Flux release are downloaded: the release's
``manifests/bases/<component>/kustomization.yaml`` in fluxcd/flux2 names each component's
``<component>.crds.yaml`` release asset. With files (or URLs), those are read instead: ``--release``
then only labels the data, and ``--component NAME=VERSION`` records where they come from.

Every CustomResourceDefinition of a ``*.fluxcd.io`` group is kept, each version with its
served/storage/deprecated flags and its openAPIV3Schema without descriptions; the previous data is
replaced. The kind enums of Alert ``eventSources`` and Receiver ``resources`` also
admit the Flux Operator's FluxInstance, ResourceSet and ResourceSetInputProvider, as the Flux Operator
patches them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fluxops.layout.crd_schema import strip_docs  # noqa: E402

OUT = ROOT / "fluxops" / "layout" / "schema_data" / "flux"
COMPONENTS = (
    "source-controller",
    "kustomize-controller",
    "helm-controller",
    "notification-controller",
    "image-reflector-controller",
    "image-automation-controller",
    "source-watcher",
)
BASES = (
    "https://raw.githubusercontent.com/fluxcd/flux2/{release}/manifests/bases/{component}/kustomization.yaml"
)
CRDS_URL = re.compile(r"https://\S+/releases/download/(v[^/]+)/\S+\.crds\.yaml")
FLUX_GROUP = re.compile(r"(^|\.)fluxcd\.io$")
VERSION_KEYS = ("name", "served", "storage", "deprecated", "deprecationWarning")
# The Flux Operator (which installs most Flux 2.7 clusters) patches these enums of every version so
# alerts and receivers can name its own kinds; the data admits them too.
OPERATOR_KINDS = ("FluxInstance", "ResourceSet", "ResourceSetInputProvider")
OPERATOR_ENUMS = {
    "alerts.notification.toolkit.fluxcd.io": ("spec", "eventSources"),
    "receivers.notification.toolkit.fluxcd.io": ("spec", "resources"),
}


def read(location: str) -> str:
    """A file's text, or a URL's body."""
    if re.match(r"https?://", location):
        with urllib.request.urlopen(location, timeout=60) as response:
            return str(response.read().decode("utf-8"))
    return Path(location).read_text(encoding="utf-8")


def release_files(release: str) -> tuple[list[str], dict[str, str]]:
    """The CRD asset URLs of every component of a Flux release, and each component's version."""
    urls, versions = [], {}
    for component in COMPONENTS:
        found = CRDS_URL.search(read(BASES.format(release=release, component=component)))
        if found is None:
            raise SystemExit(f"no *.crds.yaml URL in flux2 {release} manifests/bases/{component}")
        urls.append(found.group(0))
        versions[component] = found.group(1)
    return urls, versions


def compact_crd(doc: dict[str, Any]) -> dict[str, Any]:
    """The parts of a CRD validation reads: group, names, scope, versions and their schemas."""
    spec = doc["spec"]
    versions = []
    for entry in spec.get("versions") or []:
        kept = {k: entry[k] for k in VERSION_KEYS if k in entry}
        schema = (entry.get("schema") or {}).get("openAPIV3Schema")
        if schema is not None:
            kept["schema"] = {"openAPIV3Schema": strip_docs(schema)}
        versions.append(kept)
    return {
        "apiVersion": doc.get("apiVersion", "apiextensions.k8s.io/v1"),
        "kind": "CustomResourceDefinition",
        "metadata": {"name": doc.get("metadata", {}).get("name", "")},
        "spec": {
            "group": spec["group"],
            "names": {k: v for k, v in spec["names"].items() if k in ("kind", "plural", "singular")},
            "scope": spec.get("scope", "Namespaced"),
            "versions": versions,
        },
    }


def add_operator_kinds(doc: dict[str, Any]) -> None:
    """Add the Flux Operator's kinds to the reference enums it patches (Alert, Receiver)."""
    keys = OPERATOR_ENUMS.get(str(doc.get("metadata", {}).get("name", "")))
    if keys is None:
        return
    for entry in doc["spec"].get("versions") or []:
        node = (entry.get("schema") or {}).get("openAPIV3Schema") or {}
        for key in keys:
            node = node.get("properties", {}).get(key, {})
        enum = node.get("items", {}).get("properties", {}).get("kind", {}).get("enum")
        if not isinstance(enum, list):
            raise SystemExit(
                f"{doc['metadata']['name']} {entry.get('name')}: no kind enum at {'.'.join(keys)}"
            )
        enum.extend(k for k in OPERATOR_KINDS if k not in enum)


def flux_crds(locations: list[str]) -> list[dict[str, Any]]:
    """Every Flux CRD in the given files or URLs."""
    found = []
    for location in locations:
        for doc in yaml.safe_load_all(read(location)):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            if FLUX_GROUP.search(str(doc.get("spec", {}).get("group", ""))):
                add_operator_kinds(doc)
                found.append(doc)
    return found


def write(out: Path, release: str, components: dict[str, str], crds: list[dict[str, Any]]) -> None:
    """Replace the data in ``out`` with these CRDs."""
    if out.exists():
        shutil.rmtree(out)
    kinds: dict[str, dict[str, str]] = {}
    for doc in sorted(crds, key=lambda d: (d["spec"]["group"], d["spec"]["names"]["kind"])):
        group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
        rel = f"{group}/{kind.lower()}.json"
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(compact_crd(doc), separators=(",", ":"), sort_keys=True) + "\n")
        kinds.setdefault(group, {})[kind] = rel
    index = {"release": release, "components": components, "kinds": kinds}
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--release", required=True, help="the Flux release, e.g. v2.7.5")
    parser.add_argument(
        "--out", type=Path, default=OUT, help=f"where to write (default {OUT.relative_to(ROOT)})"
    )
    parser.add_argument(
        "--component",
        action="append",
        default=[],
        metavar="NAME=VERSION",
        help="with files: record which controller release they come from (repeatable)",
    )
    parser.add_argument("files", nargs="*", help="CRD YAML files or URLs (default: the release's CRD assets)")
    args = parser.parse_args(argv)
    locations = list(args.files)
    if locations:
        components = dict(c.split("=", 1) for c in args.component if "=" in c)
    else:
        locations, components = release_files(args.release)
    crds = flux_crds(locations)
    if not crds:
        raise SystemExit("no Flux CustomResourceDefinition in the given files")
    write(args.out, args.release, components, crds)
    print(f"wrote {len(crds)} Flux CRDs of {args.release} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
