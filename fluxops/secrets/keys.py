"""Per-cluster age keys: generate (store + ``.sops.yaml`` rule), show, and the key each sops call uses.

Key precedence for decrypting: the operator's explicit environment first (SOPS_AGE_KEY_FILE, then
SOPS_AGE_KEY / SOPS_AGE_KEY_CMD), then the key store's ``<key_dir>/<cluster>.agekey``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fluxops.clusters import cluster_dir
from fluxops.clusters import names as clusters
from fluxops.errors import KeyStoreError
from fluxops.secrets import keystore, rules
from fluxops.secrets.sops import KeySource, environment_key
from fluxops.secrets.walk import inspect_cluster


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
    cluster_dir(root, cluster)
    key, archived = keystore.generate(key_dir, cluster, force=force)
    changed = rules.set_cluster_recipients(root, cluster, [key.public])
    stale = [
        i.path
        for i in inspect_cluster(root, cluster)
        if i.state == "encrypted" and key.public not in i.recipients
    ]
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
        rule = rules.cluster_recipients(root, name)
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
