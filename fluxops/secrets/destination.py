"""Where ``secrets.new`` puts a Secret by default: a folder Flux decrypts, for the Secret's namespace.

Flux decrypts only what a Kustomization with ``spec.decryption.provider: sops`` applies, so a Secret
written anywhere else would reach the API server still encrypted. The default folder is the one
Flux Kustomization of the cluster's tree that decrypts and applies into the Secret's namespace (its
``targetNamespace``, else the namespace its kustomization.yaml sets, else those its manifests use).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fluxops import clusters
from fluxops.errors import SecretsError
from fluxops.secrets import manifests

FLUX_GROUP = "kustomize.toolkit.fluxcd.io/"
LEGACY_FOLDER = "infrastructure-config"  # a tree with no decrypting Kustomization (the first layout)


@dataclass(frozen=True)
class Decrypting:
    """A folder a Flux Kustomization of the cluster decrypts, and the namespace it applies into."""

    folder: Path
    namespaces: frozenset[str]
    kustomization: str  # the Flux Kustomization's name

    def describe(self, root: Path) -> str:
        """``folder (namespaces)`` relative to ``root``."""
        return f"{self.folder.relative_to(root)} ({', '.join(sorted(self.namespaces)) or 'no namespace'})"


def _documents(path: Path) -> list[Any]:
    try:
        return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # an unreadable file names no destination; validate reports it


def _decrypts(doc: Any) -> bool:
    if not isinstance(doc, dict) or doc.get("kind") != "Kustomization":
        return False
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    decryption = spec.get("decryption") if isinstance(spec.get("decryption"), dict) else {}
    api = str(doc.get("apiVersion", ""))
    return api.startswith(FLUX_GROUP) and decryption.get("provider") == "sops" and bool(spec.get("path"))


def _folder_namespaces(folder: Path) -> frozenset[str]:
    """The namespaces the folder's objects go to: its kustomization's ``namespace:`` when set, else
    those its manifests name (a Secret's metadata stays in clear under sops) and the Namespaces it makes."""
    kustomization = clusters.kustomization_file(folder)
    if kustomization is not None:
        namespace = manifests.kustomization_namespace(kustomization)
        if namespace:
            return frozenset({namespace})
    found: set[str] = set()
    for path in sorted(folder.glob("*.y*ml")):
        for doc in _documents(path):
            if not isinstance(doc, dict) or str(doc.get("apiVersion", "")).startswith(FLUX_GROUP):
                continue  # a Flux Kustomization beside the folder's manifests is applied by its parent
            meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
            name = meta.get("name") if doc.get("kind") == "Namespace" else meta.get("namespace")
            if name:
                found.add(str(name))
    return frozenset(found)


def decrypting_folders(root: Path, cluster: str) -> list[Decrypting]:
    """Every folder of the repository a Flux Kustomization in the cluster's tree decrypts."""
    root = Path(root).absolute()
    found: dict[Path, Decrypting] = {}
    for path in sorted(clusters.cluster_dir(root, cluster).rglob("*.y*ml")):
        if ".sops." in path.name:
            continue
        for doc in _documents(path):
            if not _decrypts(doc):
                continue
            spec = doc["spec"]
            folder = Path(os.path.normpath(root / str(spec["path"])))
            if folder.is_dir() and folder not in found:
                target = spec.get("targetNamespace")
                namespaces = frozenset({str(target)}) if target else _folder_namespaces(folder)
                name = str((doc.get("metadata") or {}).get("name", ""))
                found[folder] = Decrypting(folder, namespaces, name)
    return list(found.values())


def default_dest(root: Path, cluster: str, name: str, namespace: str) -> Path:
    """``<folder>/<name>.sops.yaml`` in the one decrypting folder of ``namespace``; SecretsError if none
    or several (naming them, and ``--dest``). A tree where no Flux Kustomization decrypts yet keeps the
    cluster's ``infrastructure-config`` folder."""
    root = Path(root).absolute()
    file = f"{name}{manifests.SOPS_SUFFIX}"
    folders = decrypting_folders(root, cluster)
    if not folders:
        return clusters.cluster_dir(root, cluster) / LEGACY_FOLDER / file
    matches = [d for d in folders if namespace in d.namespaces]
    if len(matches) == 1:
        return matches[0].folder / file
    listed = "; ".join(d.describe(root) for d in (matches or folders))
    if matches:
        raise SecretsError(
            f"several folders of cluster {cluster} that Flux decrypts apply into namespace {namespace}: "
            f"{listed}; choose one with --dest FOLDER/{file}"
        )
    raise SecretsError(
        f"no folder of cluster {cluster} that Flux decrypts applies into namespace {namespace} (a Secret "
        f"anywhere else would reach the cluster encrypted); give --dest inside one of: {listed}, or add "
        "spec.decryption to the Flux Kustomization of the folder you want"
    )
