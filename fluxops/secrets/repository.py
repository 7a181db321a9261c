"""The secret files of a repository: new, scaffold, encrypt, view, edit.

Plaintext never touches the repository: a new manifest is rendered in memory, encrypted by sops on
stdin with the creation rule of its destination, and only the ciphertext is written (atomically).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fluxops import clusters
from fluxops.errors import PartialError, SecretsError, SopsError
from fluxops.files import atomic_write, exclusive
from fluxops.masking import Secret
from fluxops.progname import progname
from fluxops.secrets import keys, keystore, manifests, rules, walk
from fluxops.secrets.destination import default_dest
from fluxops.secrets.encrypted import RESTORE, double_encrypted, inspect
from fluxops.secrets.manifests import SOPS_SUFFIX, SecretSpec
from fluxops.secrets.sops import KeySource, Sops, parallel


def cluster_secret_files(root: Path, cluster: str) -> list[Path]:
    """The cluster's files named as secrets by convention (``*.sops.yaml``, ``*.sops.yml``), sorted."""
    return [p for p in walk.cluster_files(root, cluster) if p.name.endswith(manifests.SOPS_SUFFIXES)]


def _check_rule_has_key(root: Path, key_dir: Path, cluster: str) -> None:
    """Refuse to encrypt for a cluster whose rule does not include the operator's store key."""
    rule = rules.cluster_recipients(root, cluster)
    if not rule:
        raise SopsError(
            f"{rules.config_path(root)} has no creation rule for cluster {cluster}; "
            f"run `{progname()} keys.generate --cluster {cluster}`",
            cluster=cluster,
        )
    path = keystore.key_path(key_dir, cluster)
    if path.exists() and keystore.public_key(path, cluster=cluster) not in rule:
        raise SopsError(
            f"the key in {path} is not a recipient of cluster {cluster}'s rule in .sops.yaml, so you could "
            f"not read what would be written; run `{progname()} keys.generate --cluster {cluster} --force` "
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


def _resolve_dest(root: Path, cluster: str, name: str, namespace: str, dest: str | Path | None) -> Path:
    tree = clusters.cluster_dir(root, cluster).absolute()
    path = default_dest(root, cluster, name, namespace) if dest is None else Path(dest)
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
    envs: Iterable[str] = (),
    values: Mapping[str, Secret] | None = None,
    dest: str | Path | None = None,
    force: bool = False,
) -> NewSecret:
    """Write an encrypted Secret manifest and reference it from the nearest kustomization.yaml.

    Values come from ``literals`` (``k=v``), ``files`` (``k=PATH``), ``envs`` (``k=ENVVAR``) and
    ``values`` (already read, e.g. from stdin); see :func:`manifests.parse_values`.
    """
    root = Path(root).absolute()
    manifests.check_name(name)
    manifests.check_name(namespace, "namespace")
    path = _resolve_dest(root, cluster, name, namespace, dest)
    if path.exists() and not force:
        raise SecretsError(
            f"{path} already exists; edit it with `{progname()} secrets.edit {path}` or pass --force"
        )
    string_data, data = manifests.parse_values(list(literals), list(files), list(envs), values)
    if not string_data and not data:
        raise SecretsError(
            "give the secret's values with --from-file KEY=PATH, --from-env KEY=ENVVAR or --from-stdin KEY "
            "(--from-literal KEY=VALUE only with --allow-argv: it shows the value in the process list)"
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
    """One referenced secret file and what scaffold did with it.

    ``ok`` decrypts with your key; ``written`` was missing or encrypted only to keys you do not hold
    (placeholders written); ``kept`` is readable some other way or uses PGP/KMS keys (``--force``
    replaces it); ``damaged`` and ``plaintext`` are never touched.
    """

    path: Path
    state: str
    reason: str = ""


def _scaffold_one(
    sops: Sops, key: KeySource, held: set[str], path: Path, kustomization: Path, force: bool
) -> Scaffolded:
    namespace = manifests.kustomization_namespace(kustomization) or "default"
    fallback = path.name.split(".sops.")[0] or "secret"
    document, header, reason = None, "", "missing"
    if path.exists():
        found = inspect(path)
        if found.state == "plaintext":
            return Scaffolded(path, "plaintext", f"not encrypted: run `{progname()} secrets.encrypt`")
        if found.state != "encrypted":
            return Scaffolded(path, "damaged", found.problem)
        if held & set(found.recipients):
            verdict = sops.verify(path, key)
            if verdict.state == "ok":
                return Scaffolded(path, "ok")
            return Scaffolded(path, "damaged", verdict.detail)  # your key, yet unreadable: never overwrite
        if not found.age_only and not force:
            kinds = ", ".join(found.key_services)
            return Scaffolded(
                path, "kept", f"encrypted to {kinds} keys, not managed here; --force replaces it"
            )
        if sops.can_decrypt(path, key) and not force:
            return Scaffolded(path, "kept", "readable with a key you have; --force replaces its values")
        document = found.documents[0] if found.documents else None
        header = manifests.leading_comments(path.read_text())
        reason = f"encrypted only to {', '.join(found.recipients) or 'keys'} you do not hold"
    spec = manifests.readable_spec(
        document, fallback_name=fallback, fallback_namespace=namespace, header=header
    )
    _write_encrypted(sops, spec.render(), path)
    return Scaffolded(path, "written", reason)


def scaffold(root: Path, key_dir: Path, cluster: str, *, force: bool = False) -> list[Scaffolded]:
    """Placeholder secrets, to your key, for every referenced secret file that is missing or not yours.

    A file is rewritten only when it is missing or its recipients (read from its metadata) include
    no key you hold and you cannot decrypt it; a file to your key that does not decrypt is damaged
    and reported, never rewritten.
    """
    root = Path(root).absolute()
    tree = clusters.cluster_dir(root, cluster)
    _check_rule_has_key(root, key_dir, cluster)
    key = keys.decryption_key(key_dir, cluster, root)
    held = keys.held_recipients(key_dir, cluster)
    sops = Sops(root)
    referenced = manifests.referenced_secret_files(tree)
    return parallel(lambda item: _scaffold_one(sops, key, held, *item, force), referenced)


@dataclass(frozen=True)
class Encrypted:
    """What ``secrets.encrypt`` found: files it encrypted, and damaged ones it left alone."""

    changed: list[Path]
    damaged: list[tuple[Path, str]]


def encrypt(root: Path, cluster: str | None = None) -> Encrypted:
    """Encrypt every plaintext ``*.sops.yaml``/``*.sops.yml`` of one cluster or all, in place.

    Encrypted files stay byte-identical; damaged ones (ciphertext without metadata) are reported and
    never encrypted a second time.
    """
    root = Path(root).absolute()
    names = [cluster] if cluster else clusters.names(root)
    found = [inspect(path) for name in names for path in cluster_secret_files(root, name)]
    todo = [i.path for i in found if i.state == "plaintext"]
    damaged = [(i.path, i.problem) for i in found if i.state in ("damaged", "unparsable")]
    sops = Sops(root)
    done: list[Path] = []

    def one(path: Path) -> None:
        sops.encrypt_file(path)
        done.append(path)

    try:
        parallel(one, todo)
    except SopsError as exc:
        raise PartialError(str(exc), done=sorted(done)) from None
    return Encrypted(changed=sorted(done), damaged=damaged)


@dataclass(frozen=True)
class Rekeyed:
    """One encrypted file and what ``secrets.rekey`` did: ``updated``, ``unchanged`` or a problem."""

    path: Path
    outcome: str
    detail: str = ""


def rekey(root: Path, key_dir: Path, cluster: str | None = None) -> list[Rekeyed]:
    """``sops updatekeys`` every encrypted file of one cluster or all, for the recipients .sops.yaml names.

    Each file is verified first (its MAC, with the key you hold): a tampered or damaged file is
    reported and never re-keyed, and neither is a file no creation rule matches. Holds the key
    store's lock, so a rotation cannot run at the same time.
    """
    root = Path(root).absolute()
    sops = Sops(root)
    results: list[Rekeyed] = []
    with exclusive(keystore.lock_path(key_dir), "secrets.rekey"):
        for name in [cluster] if cluster else clusters.names(root):
            found = walk.inspect_cluster(root, name)
            results += [Rekeyed(i.path, "damaged", i.problem) for i in found if i.state == "damaged"]
            files = [i.path for i in found if i.state == "encrypted"]
            if not files:
                continue
            key = keys.decryption_key(key_dir, name, root)
            verdicts = parallel(lambda path, key=key: sops.verify(path, key), files)
            sound = []
            for path, verdict in zip(files, verdicts, strict=True):
                if verdict.state != "ok":
                    results.append(Rekeyed(path, verdict.state, verdict.detail))
                elif rules.rule_for(root, sops.relative(path)) is None:
                    results.append(Rekeyed(path, "no-rule", "no creation rule in .sops.yaml matches it"))
                else:
                    sound.append(path)
            try:
                outcomes = sops.updatekeys_all(sound, key)
            except SopsError as exc:
                raise PartialError(str(exc), done=[]) from None
            results += [Rekeyed(path, outcome) for path, outcome in outcomes.items()]
    return sorted(results, key=lambda r: r.path)


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
    found = inspect(path)
    if found.state == "plaintext":
        raise SecretsError(
            f"{path} is not encrypted; run `{progname()} secrets.encrypt --cluster {cluster}` first"
        )
    if found.state != "encrypted":
        raise SecretsError(f"{path}: {found.problem}")
    plaintext = Sops(root).decrypt(path, keys.decryption_key(key_dir, cluster, root))
    if double_encrypted(plaintext.reveal()):
        raise SecretsError(f"{path} decrypts to sops ciphertext: it was encrypted twice; {RESTORE}")
    return plaintext


def edit(root: Path, key_dir: Path, path: Path) -> int:
    """Edit an encrypted file in $EDITOR through sops; returns sops' exit code."""
    root = Path(root).absolute()
    path, cluster = _cluster_for_file(root, path)
    return Sops(root).edit(path, keys.decryption_key(key_dir, cluster))
