"""The secret files of a repository: new, scaffold, encrypt, view, edit.

Plaintext never touches the repository: a new manifest is rendered in memory, encrypted by sops on
stdin with the creation rule of its destination, and only the ciphertext is written (atomically).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fluxops import clusters
from fluxops.errors import SecretsError, SopsError
from fluxops.files import atomic_write
from fluxops.masking import Secret
from fluxops.secrets import keys, keystore, manifests, rules, walk
from fluxops.secrets.encrypted import inspect
from fluxops.secrets.manifests import SOPS_SUFFIX, SecretSpec
from fluxops.secrets.sops import Sops, parallel
from fluxops.secrets.walk import encrypted_files

DEFAULT_FOLDER = "infrastructure-config"


def default_dest(root: Path, cluster: str, name: str) -> Path:
    """Default file of ``secrets.new``: ``k8s/clusters/<c>/infrastructure-config/<name>.sops.yaml``."""
    return Path(root) / clusters.CLUSTERS_DIR / cluster / DEFAULT_FOLDER / f"{name}{SOPS_SUFFIX}"


def cluster_secret_files(root: Path, cluster: str) -> list[Path]:
    """The cluster's files named as secrets by convention (``*.sops.yaml``, ``*.sops.yml``), sorted."""
    return [p for p in walk.cluster_files(root, cluster) if p.name.endswith(manifests.SOPS_SUFFIXES)]


def _check_rule_has_key(root: Path, key_dir: Path, cluster: str) -> None:
    """Refuse to encrypt for a cluster whose rule does not include the operator's store key."""
    rule = rules.cluster_recipients(root, cluster)
    if not rule:
        raise SopsError(
            f"{rules.config_path(root)} has no creation rule for cluster {cluster}; "
            f"run `invoke keys.generate --cluster {cluster}`",
            cluster=cluster,
        )
    path = keystore.key_path(key_dir, cluster)
    if path.exists() and keystore.public_key(path, cluster=cluster) not in rule:
        raise SopsError(
            f"the key in {path} is not a recipient of cluster {cluster}'s rule in .sops.yaml, so you could "
            f"not read what would be written; run `invoke keys.generate --cluster {cluster} --force` "
            "or fix .sops.yaml",
            cluster=cluster,
            key_file=str(path),
        )


@dataclass(frozen=True)
class NewSecret:
    """What ``secrets.new`` wrote."""

    path: Path
    kustomization: Path | None
    added: bool


def _resolve_dest(root: Path, cluster: str, name: str, dest: str | Path | None) -> Path:
    tree = clusters.cluster_dir(root, cluster).absolute()
    path = default_dest(root, cluster, name) if dest is None else Path(dest)
    if not path.is_absolute():
        path = Path(root) / path
    path = Path(os.path.normpath(path.absolute()))
    if tree not in path.parents:
        raise SecretsError(
            f"--dest {dest} is outside the cluster's tree {tree}; secrets of {cluster} live there"
        )
    if not path.name.endswith(SOPS_SUFFIX):
        raise SecretsError(
            f"--dest {dest} must end in {SOPS_SUFFIX} (only those files are encrypted and checked)"
        )
    return path


def new(
    root: Path,
    key_dir: Path,
    cluster: str,
    name: str,
    namespace: str,
    *,
    literals: Iterable[str] = (),
    files: Iterable[str] = (),
    dest: str | Path | None = None,
    force: bool = False,
) -> NewSecret:
    """Write an encrypted Secret manifest and reference it from the nearest kustomization.yaml."""
    root = Path(root).absolute()
    manifests.check_name(name)
    manifests.check_name(namespace, "namespace")
    path = _resolve_dest(root, cluster, name, dest)
    if path.exists() and not force:
        raise SecretsError(
            f"{path} already exists; edit it with `invoke secrets.edit {path}` or pass --force"
        )
    string_data, data = manifests.parse_values(list(literals), list(files))
    if not string_data and not data:
        raise SecretsError(
            "give the secret's values with --from-literal KEY=VALUE and/or --from-file KEY=PATH"
        )
    tree = clusters.cluster_dir(root, cluster)
    kustomization = manifests.nearest_kustomization(path.parent, tree)
    if kustomization is None:
        raise SecretsError(
            f"no kustomization.yaml in {path.parent} or above it inside {tree}; "
            "create one or choose a --dest inside a kustomization"
        )
    _check_rule_has_key(root, key_dir, cluster)
    spec = SecretSpec(name=name, namespace=namespace, string_data=string_data, data=data)
    _write_encrypted(Sops(root), spec.render(), path)
    added = manifests.add_resource(kustomization, path)
    return NewSecret(path=path, kustomization=kustomization, added=added)


def _write_encrypted(sops: Sops, plaintext: Secret, path: Path) -> None:
    encrypted = sops.encrypt_text(plaintext, path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    atomic_write(path, encrypted, mode=mode)


@dataclass(frozen=True)
class Scaffolded:
    """One referenced secret file and what scaffold did with it."""

    path: Path
    state: str  # "ok" (decryptable), "written" (missing or undecryptable: placeholders), "plaintext"
    reason: str = ""


def scaffold(root: Path, key_dir: Path, cluster: str) -> list[Scaffolded]:
    """Write placeholder secrets for every referenced ``*.sops.yaml`` that is missing or unreadable to us."""
    root = Path(root).absolute()
    tree = clusters.cluster_dir(root, cluster)
    _check_rule_has_key(root, key_dir, cluster)
    key = keys.decryption_key(key_dir, cluster)
    sops = Sops(root)
    referenced = manifests.referenced_secret_files(tree)

    def one(item: tuple[Path, Path]) -> Scaffolded:
        path, kustomization = item
        namespace = manifests.kustomization_namespace(kustomization) or "default"
        fallback = path.name[: -len(SOPS_SUFFIX)] or "secret"
        header = ""
        if path.exists():
            found = inspect(path)
            document = found.documents[0] if found.documents else None
            header = manifests.leading_comments(path.read_text())
            if found.state != "encrypted":
                return Scaffolded(path, "plaintext", "not encrypted: run `invoke secrets.encrypt`")
            if sops.can_decrypt(path, key):
                return Scaffolded(path, "ok")
            reason = "encrypted to a key you do not hold"
        else:
            document, reason = None, "missing"
        spec = manifests.readable_spec(
            document, fallback_name=fallback, fallback_namespace=namespace, header=header
        )
        _write_encrypted(sops, spec.render(), path)
        return Scaffolded(path, "written", reason)

    return parallel(one, referenced)


def encrypt(root: Path, cluster: str | None = None) -> list[Path]:
    """Encrypt every plaintext ``*.sops.yaml`` of one cluster or all; returns the files changed."""
    root = Path(root).absolute()
    names = [cluster] if cluster else clusters.names(root)
    files = [path for name in names for path in cluster_secret_files(root, name)]
    sops = Sops(root)
    changed = parallel(sops.encrypt_file, files)
    return [path for path, did in zip(files, changed, strict=True) if did]


def rekey(root: Path, key_dir: Path, cluster: str | None = None) -> list[Path]:
    """``sops updatekeys`` every encrypted file of one cluster or all, for the recipients .sops.yaml names."""
    root = Path(root).absolute()
    sops = Sops(root)
    done: list[Path] = []
    for name in [cluster] if cluster else clusters.names(root):
        files = encrypted_files(root, name)
        if files:
            sops.updatekeys_all(files, keys.decryption_key(key_dir, name))
        done.extend(files)
    return done


def _cluster_for_file(root: Path, path: Path) -> tuple[Path, str]:
    path = Path(path)
    if not path.is_absolute():
        path = Path(root) / path
    if not path.is_file():
        raise SecretsError(f"{path}: no such file")
    cluster = clusters.cluster_of(root, path)
    if cluster is None:
        raise SecretsError(
            f"{path} is not inside k8s/clusters/<cluster>/ of {root}; cannot tell whose key to use"
        )
    clusters.cluster_dir(root, cluster)
    return path, cluster


def view(root: Path, key_dir: Path, path: Path) -> Secret:
    """The decrypted file, as a Secret (the caller decides to reveal it)."""
    root = Path(root).absolute()
    path, cluster = _cluster_for_file(root, path)
    if inspect(path).state != "encrypted":
        raise SecretsError(f"{path} is not encrypted; run `invoke secrets.encrypt --cluster {cluster}` first")
    return Sops(root).decrypt(path, keys.decryption_key(key_dir, cluster))


def edit(root: Path, key_dir: Path, path: Path) -> int:
    """Edit an encrypted file in $EDITOR through sops; returns sops' exit code."""
    root = Path(root).absolute()
    path, cluster = _cluster_for_file(root, path)
    return Sops(root).edit(path, keys.decryption_key(key_dir, cluster))
