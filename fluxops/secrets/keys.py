"""Per-cluster age keys: generate (store + ``.sops.yaml`` rule), show, and the key each sops call uses.

Key precedence for decrypting: the operator's explicit environment first (SOPS_AGE_KEY_FILE, then
SOPS_AGE_KEY / SOPS_AGE_KEY_CMD), then the key store's ``<key_dir>/<cluster>.agekey``. Variables that
only point at the store's own key files (what ``keys.env`` prints for plain sops) count as the store.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxops.clusters import cluster_dir
from fluxops.clusters import names as clusters
from fluxops.errors import KeyStoreError
from fluxops.progname import progname
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


def live_recipients(root: Path, cluster: str, keep: set[str]) -> dict[str, list[Path]]:
    """Rule recipients (other than ``keep`` and placeholders) with the cluster files encrypted to them."""
    placeholders = rules.placeholder_recipients(root)
    live = [r for r in rules.cluster_recipients(root, cluster) if r not in keep and r not in placeholders]
    found = [i for i in inspect_cluster(root, cluster) if i.state == "encrypted"]
    return {r: [i.path for i in found if r in i.recipients] for r in live}


def _refuse_stranding(root: Path, cluster: str, keep: set[str], action: str) -> None:
    """KeyStoreError when replacing the rule's recipients would strand files encrypted to them."""
    stranded = {r: files for r, files in live_recipients(root, cluster, keep).items() if files}
    if not stranded:
        return
    lines = [
        f"- {r}: {len(files)} file(s), e.g. {files[0].relative_to(Path(root).absolute())}"
        for r, files in stranded.items()
    ]
    raise KeyStoreError(
        f"refusing to {action}: the .sops.yaml rule of cluster {cluster} names a key that files are "
        "still encrypted to:\n" + "\n".join(lines) + "\n"
        f"If you hold that key, restore it: `{progname()} keys.import --cluster {cluster} FILE` (or point "
        "SOPS_AGE_KEY_FILE at it). To add a new key anyway (the rule keeps the old recipient, so "
        "nothing is stranded), pass --force.",
        cluster=cluster,
    )


def _rule_after(root: Path, cluster: str, new: str, *, drop: set[str]) -> list[str]:
    """The cluster's own rule's recipients with ``drop`` and placeholders removed and ``new`` first."""
    placeholders = rules.placeholder_recipients(root)
    kept = [r for r in rules.own_recipients(root, cluster) if r not in drop | placeholders | {new}]
    return [new, *kept]


def generate(root: Path, key_dir: Path, cluster: str, *, force: bool = False) -> Generated:
    """A new key for the cluster in the store, and its creation rule in ``.sops.yaml`` pointing at it.

    Without ``force`` it refuses to touch a cluster that has a key, or whose rule names a key files
    are still encrypted to (placeholder keys and keys no file uses may be replaced). With ``force``
    the old store key is archived (never deleted) and dropped from the rule; any other recipient
    stays in the rule.
    """
    cluster_dir(root, cluster)
    old_path = keystore.key_path(key_dir, cluster)
    old_public = keystore.publics_in_file(old_path) if old_path.exists() else []
    if not force:
        _refuse_stranding(root, cluster, set(old_public), "generate a new key")
    key, archived = keystore.generate(key_dir, cluster, force=force)
    wanted = _rule_after(root, cluster, key.public, drop=set(old_public)) if force else [key.public]
    changed = rules.set_cluster_recipients(root, cluster, wanted)
    found = inspect_cluster(root, cluster)
    stale = [i.path for i in found if i.state == "encrypted" and key.public not in i.recipients]
    return Generated(cluster=cluster, key=key, archived=archived, config_changed=changed, stale=stale)


def import_key(root: Path, key_dir: Path, cluster: str, source: Path, *, force: bool = False) -> Generated:
    """An existing age-keygen key becomes the cluster's key in the store (0600) and a rule recipient.

    When the rule already names the key, the rule is left as it is. Otherwise the key is added to
    the rule (placeholders dropped); if the rule names another key that files are encrypted to, that
    needs ``force``, and the other recipient is kept.
    """
    cluster_dir(root, cluster)
    publics = keystore.publics_in_file(Path(source).expanduser())
    current = keystore.key_path(key_dir, cluster)
    held = keystore.publics_in_file(current) if current.exists() else []
    if held and held != publics and not force:
        keystore.import_key(key_dir, cluster, source)  # refuses, naming the key already in the store
    if len(publics) == 1 and publics[0] not in rules.cluster_recipients(root, cluster) and not force:
        why = f"import {source} as the key of cluster {cluster}"
        _refuse_stranding(root, cluster, {*publics, *held}, why)
    key, archived = keystore.import_key(key_dir, cluster, source, force=force)
    changed = False
    if key.public not in rules.cluster_recipients(root, cluster):
        changed = rules.set_cluster_recipients(
            root, cluster, _rule_after(root, cluster, key.public, drop=set())
        )
    found = inspect_cluster(root, cluster)
    stale = [i.path for i in found if i.state == "encrypted" and key.public not in i.recipients]
    return Generated(cluster=cluster, key=key, archived=archived, config_changed=changed, stale=stale)


def held_recipients(key_dir: Path, cluster: str) -> set[str]:
    """Public keys of every age identity the user holds for a cluster (derived in memory).

    The key store's current, pending and archived keys of the cluster, the environment's
    (SOPS_AGE_KEY_FILE, SOPS_AGE_KEY) and sops' default key file ($XDG_CONFIG_HOME/sops/age/keys.txt).
    """
    files = [keystore.key_path(key_dir, cluster), keystore.pending_path(key_dir, cluster)]
    files += keystore.archived_keys(key_dir, cluster)
    if os.environ.get("SOPS_AGE_KEY_FILE"):
        files.append(Path(os.environ["SOPS_AGE_KEY_FILE"]).expanduser())
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    files.append(Path(config_home) / "sops" / "age" / "keys.txt")
    held = {public for path in files if path.is_file() for public in keystore.publics_in_file(path)}
    held.update(keystore.publics_in_text(os.environ.get("SOPS_AGE_KEY", "")))
    return held


@dataclass(frozen=True)
class KeyInfo:
    """The public side of a cluster's key and where its private half lives (never the private key)."""

    cluster: str
    key_file: Path
    public: str | None
    rule_recipients: list[str]
    problem: str | None  # a key file that is malformed or not in the rule (missing is not a problem)
    override: str | None = None
    hint: str | None = None  # what to do when the key is missing


def show(root: Path, key_dir: Path, cluster: str | None = None) -> list[KeyInfo]:
    """Public key, key file and ``.sops.yaml`` recipients of one cluster or of every cluster."""
    names = [cluster] if cluster else clusters(root)
    infos = []
    for name in names:
        cluster_dir(root, name)
        path = keystore.key_path(key_dir, name)
        public: str | None = None
        problem: str | None = None
        hint: str | None = None
        if not path.exists():
            hint = missing_key_message(root, name, path)
        else:
            try:
                public = keystore.public_key(path, cluster=name)
            except KeyStoreError as exc:
                problem = str(exc)
        rule = rules.cluster_recipients(root, name)
        if public and rule and public not in rule:
            problem = f"the key in {path} is not a recipient of the cluster's .sops.yaml rule"
        from_env = environment_key(name)
        override = f"{from_env.key_file} decrypts first (environment)" if from_env else None
        infos.append(KeyInfo(name, path, public, rule, problem, override, hint))
    return infos


def missing_key_message(root: Path | None, cluster: str, path: Path) -> str:
    """What to do when the store has no key for a cluster: restore the key the rule names, or point at it."""
    wanted = rules.cluster_recipients(root, cluster) if root is not None else []
    placeholders = rules.placeholder_recipients(root) if root is not None else set()
    live = [r for r in wanted if r not in placeholders]
    if not live:
        return (
            f"no age key for cluster {cluster} at {path}, and its .sops.yaml rule names no key of yours yet; "
            f"make one with `{progname()} keys.generate --cluster {cluster}`"
        )
    return (
        f"no age key for cluster {cluster} at {path}. Its .sops.yaml rule encrypts to {', '.join(live)}: "
        f"restore that key (`{progname()} keys.import --cluster {cluster} FILE`, from your backup) or point "
        "SOPS_AGE_KEY_FILE at the file that holds it. Do not generate a new key for a cluster whose "
        "secrets are already encrypted: the new key could not read them."
    )


def decryption_key(key_dir: Path, cluster: str, root: Path | None = None) -> KeySource:
    """The key a sops call for this cluster decrypts with: explicit environment, else the key store.

    With ``root``, a missing key's error names the recipient the cluster's rule expects.
    """
    from_env = environment_key(cluster)
    if from_env is not None and not _names_only_the_store(key_dir, from_env):
        return from_env
    path = keystore.key_path(key_dir, cluster)
    if not path.exists():
        raise KeyStoreError(missing_key_message(root, cluster, path), cluster=cluster, key_file=str(path))
    keystore.public_key(path, cluster=cluster)
    return KeySource.store_file(cluster, path)


def _store_files(key_dir: Path, names: list[str]) -> bool:
    store = Path(key_dir).expanduser().absolute()
    paths = [Path(name).expanduser().absolute() for name in names]
    return bool(paths) and all(
        p.parent == store
        and p.name.endswith(keystore.KEY_SUFFIX)
        and not p.name.endswith(keystore.PENDING_SUFFIX)
        for p in paths
    )


def _names_only_the_store(key_dir: Path, source: KeySource) -> bool:
    """True when an environment key only points at the store's current key files (what ``keys.env``
    prints): then each cluster uses its own store key, as if the variable were not set."""
    if "SOPS_AGE_KEY_FILE" in source.env:
        return _store_files(key_dir, [str(source.env["SOPS_AGE_KEY_FILE"])])
    command = str(source.env.get("SOPS_AGE_KEY_CMD", ""))
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    return len(words) > 1 and words[0] == "cat" and _store_files(key_dir, words[1:])


@dataclass(frozen=True)
class ShellEnv:
    """What lets plain sops use the key store's keys: paths only, never a key."""

    variables: dict[str, str]  # variable -> value, as exported
    key_files: dict[str, Path]  # cluster -> its key file
    missing: list[str]  # clusters without a key

    @property
    def lines(self) -> list[str]:
        """The ``export`` lines for a POSIX shell."""
        return [f"export {name}={shlex.quote(value)}" for name, value in self.variables.items()]

    @property
    def clusters(self) -> list[str]:
        """The clusters whose key the variables give."""
        return list(self.key_files)

    def to_dict(self) -> dict[str, Any]:
        """``keys.env --json`` (docs/cli.md)."""
        return {
            "variables": dict(self.variables),
            "lines": self.lines,
            "clusters": [{"cluster": c, "key_file": str(path)} for c, path in self.key_files.items()],
            "missing": list(self.missing),
        }


def shell_env(root: Path, key_dir: Path, cluster: str | None = None) -> ShellEnv:
    """``export`` lines for plain sops and editor plugins: one cluster's key file, or every cluster's.

    One cluster: ``SOPS_AGE_KEY_FILE=<key_dir>/<cluster>.agekey``. Every cluster: sops 3.11 reads a
    single file from SOPS_AGE_KEY_FILE, so ``SOPS_AGE_KEY_CMD='cat FILE...'`` (sops runs it without a
    shell and takes every identity it prints). Clusters without a key are listed in ``missing``.
    """
    names = [cluster] if cluster else clusters(root)
    found: list[tuple[str, Path]] = []
    missing: list[str] = []
    for name in names:
        cluster_dir(root, name)
        path = keystore.key_path(key_dir, name).expanduser().absolute()
        if path.exists() or cluster is not None:
            keystore.public_key(path, cluster=name)  # a missing or broken key file: its error and fix
            found.append((name, path))
        else:
            missing.append(name)
    if not found:
        raise KeyStoreError(
            f"no cluster has a key in {key_dir}; make one with `{progname()} keys.generate --cluster C`"
        )
    if cluster is not None:
        variables = {"SOPS_AGE_KEY_FILE": str(found[0][1])}
    else:
        variables = {"SOPS_AGE_KEY_CMD": shlex.join(["cat", *(str(path) for _, path in found)])}
    return ShellEnv(variables=variables, key_files=dict(found), missing=missing)
