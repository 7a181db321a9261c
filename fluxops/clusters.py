"""This repository's cluster folders (``k8s/clusters/<name>``), and the names of kustomization files.

The secrets tasks keep each cluster's encrypted files and key under ``k8s/clusters/<name>``. Layout
validation finds the clusters of any Flux repository from their entry Kustomizations instead
(:mod:`fluxops.layout.discovery`).
"""

from __future__ import annotations

from pathlib import Path

from fluxops.errors import FluxopsError

CLUSTERS_DIR = Path("k8s") / "clusters"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def names(root: Path) -> list[str]:
    """Cluster names of a repository: the folders under ``k8s/clusters`` (hidden ones excluded), sorted."""
    folder = Path(root) / CLUSTERS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def cluster_dir(root: Path, cluster: str) -> Path:
    """``k8s/clusters/<cluster>`` of the root; FluxopsError naming the known clusters if it is not there."""
    folder = Path(root) / CLUSTERS_DIR / cluster
    if not cluster or "/" in cluster or cluster.startswith(".") or not folder.is_dir():
        known = ", ".join(names(root)) or "none"
        raise FluxopsError(
            f"unknown cluster {cluster!r}: there is no {CLUSTERS_DIR / cluster}/ in {root} (known: {known})"
        )
    return folder


def cluster_of(root: Path, path: Path) -> str | None:
    """The cluster whose tree holds ``path`` (``k8s/clusters/<cluster>/...``), if any."""
    try:
        parts = Path(path).absolute().relative_to(Path(root).absolute()).parts
    except ValueError:
        return None
    if len(parts) > 3 and parts[0] == "k8s" and parts[1] == "clusters":
        return parts[2]
    return None


def kustomization_file(folder: Path) -> Path | None:
    """The kustomization file of ``folder``, if it has one (the names kustomize accepts, in its order)."""
    for name in KUSTOMIZATION_FILES:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    return None
