"""Per-cluster age keys: generate (store + ``.sops.yaml`` rule), show, and the key each sops call uses.

Key precedence for decrypting: the operator's explicit environment first (SOPS_AGE_KEY_FILE, then
SOPS_AGE_KEY / SOPS_AGE_KEY_CMD), then the key store's ``<key_dir>/<cluster>.agekey``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fluxops import keystore, sops_config
from fluxops.errors import FluxopsError, KeyStoreError
from fluxops.sops import KeySource, environment_key, file_recipients, metadata, read_document

CLUSTERS_DIR = Path("k8s") / "clusters"


def clusters(root: Path) -> list[str]:
    """Cluster names of a repository: the folders under ``k8s/clusters``."""
    folder = Path(root) / CLUSTERS_DIR
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def cluster_dir(root: Path, cluster: str) -> Path:
    """``k8s/clusters/<cluster>`` of the root; FluxopsError naming the known clusters if it is not there."""
    folder = Path(root) / CLUSTERS_DIR / cluster
    if not cluster or "/" in cluster or cluster.startswith(".") or not folder.is_dir():
        known = ", ".join(clusters(root)) or "none"
        raise FluxopsError(
            f"unknown cluster {cluster!r}: there is no {CLUSTERS_DIR / cluster}/ in {root} (known: {known})"
        )
    return folder


@dataclass(frozen=True)
class Generated:
    """What ``keys.generate`` did, and the files still encrypted only to other keys."""

    cluster: str
    key: keystore.AgeKey
    archived: Path | None
    config_changed: bool
    stale: list[Path]


def generate(root: Path, key_dir: Path, cluster: str, *, force: bool = False) -> Generated:
    """A new key for the cluster in the store, and its creation rule in ``.sops.yaml`` set to it."""
    tree = cluster_dir(root, cluster)
    key, archived = keystore.generate(key_dir, cluster, force=force)
    changed = sops_config.set_cluster_recipients(root, cluster, [key.public])
    stale = []
    for path in sorted(tree.rglob("*.sops.yaml")):
        meta = metadata(read_document(path))
        if meta is not None and key.public not in file_recipients(path):
            stale.append(path)
    return Generated(cluster=cluster, key=key, archived=archived, config_changed=changed, stale=stale)


@dataclass(frozen=True)
class KeyInfo:
    """The public side of a cluster's key and where its private half lives (never the private key)."""

    cluster: str
    key_file: Path
    public: str | None
    rule_recipients: list[str]
    problem: str | None
    override: str | None = None


def show(root: Path, key_dir: Path, cluster: str | None = None) -> list[KeyInfo]:
    """Public key, key file and ``.sops.yaml`` recipients of one cluster or of every cluster."""
    names = [cluster] if cluster else clusters(root)
    infos = []
    for name in names:
        cluster_dir(root, name)
        path = keystore.key_path(key_dir, name)
        public: str | None = None
        problem: str | None = None
        try:
            public = keystore.public_key(path, cluster=name)
        except KeyStoreError as exc:
            problem = str(exc)
        rule = sops_config.cluster_recipients(root, name)
        if public and rule and public not in rule:
            problem = f"the key in {path} is not a recipient of the cluster's .sops.yaml rule"
        from_env = environment_key(name)
        override = f"{from_env.key_file} decrypts first (environment)" if from_env else None
        infos.append(KeyInfo(name, path, public, rule, problem, override))
    return infos


def decryption_key(key_dir: Path, cluster: str) -> KeySource:
    """The key a sops call for this cluster decrypts with: explicit environment, else the key store."""
    from_env = environment_key(cluster)
    if from_env is not None:
        return from_env
    path = keystore.key_path(key_dir, cluster)
    keystore.public_key(path, cluster=cluster)
    return KeySource.store_file(cluster, path)


def cluster_of(root: Path, path: Path) -> str | None:
    """The cluster whose tree holds ``path`` (``k8s/clusters/<cluster>/...``), if any."""
    try:
        parts = Path(path).absolute().relative_to(Path(root).absolute()).parts
    except ValueError:
        return None
    if len(parts) > 3 and parts[0] == "k8s" and parts[1] == "clusters":
        return parts[2]
    return None
