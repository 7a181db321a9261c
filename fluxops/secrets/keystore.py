"""The age key store: one ``<cluster>.agekey`` per cluster, mode 0600, outside the repository.

Key files use the age-keygen format (``# created:``, ``# public key:``, ``AGE-SECRET-KEY-...``) so
sops and age read them as they are. Private keys are only ever written to 0600 files, atomically;
nothing here returns, logs or prints them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyrage

from fluxops.errors import KeyStoreError
from fluxops.files import atomic_write
from fluxops.progname import progname

KEY_SUFFIX = ".agekey"
PENDING_SUFFIX = ".pending.agekey"
ARCHIVE_DIR = "archive"
_PUBLIC_RE = re.compile(r"^#\s*public key:\s*(age1[0-9a-z]+)\s*$", re.MULTILINE)
SECRET_PREFIX = "AGE-SECRET-KEY-"  # the identity line of an age key file (bech32, HRP + "1" + data)
_SECRET_RE = re.compile(rf"^({SECRET_PREFIX}[0-9A-Z]+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class AgeKey:
    """A key file in the store and its public key (the recipient); the private key stays in the file."""

    path: Path
    public: str


def key_path(key_dir: Path, cluster: str) -> Path:
    """Where the cluster's current key lives."""
    return Path(key_dir) / f"{cluster}{KEY_SUFFIX}"


def pending_path(key_dir: Path, cluster: str) -> Path:
    """Where a rotation keeps the cluster's next key until it becomes current."""
    return Path(key_dir) / f"{cluster}{PENDING_SUFFIX}"


def lock_path(key_dir: Path) -> Path:
    """The lock that keeps two rotations or re-keys from running at once (any cluster, this key store)."""
    return Path(key_dir) / "fluxops.lock"


def archive_dir(key_dir: Path) -> Path:
    """Folder of retired keys (0700, files 0600)."""
    return Path(key_dir) / ARCHIVE_DIR


def _ensure_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)


def render(identity: pyrage.x25519.Identity, created: dt.datetime | None = None) -> str:
    """The age-keygen file text of an identity."""
    when = (created or dt.datetime.now(dt.UTC)).replace(microsecond=0).isoformat()
    return f"# created: {when}\n# public key: {identity.to_public()}\n{identity}\n"


def public_key(path: Path, *, cluster: str | None = None) -> str:
    """The recipient of a key file: its ``# public key:`` line, else derived from the identity in memory."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeyStoreError(
            f"no age key for cluster {cluster or '?'} at {path}"
            + (
                f"; restore it (`{progname()} keys.import --cluster {cluster} FILE`) or, for a cluster "
                f"with no secrets yet, `{progname()} keys.generate --cluster {cluster}`"
                if cluster
                else ""
            ),
            cluster=cluster,
            key_file=str(path),
        ) from None
    except OSError as exc:
        raise KeyStoreError(
            f"cannot read age key file {path}: {exc.strerror}", cluster=cluster, key_file=str(path)
        ) from None
    found = _PUBLIC_RE.search(text)
    secret = _SECRET_RE.search(text)
    if secret is None:
        raise KeyStoreError(
            f"{path} holds no {SECRET_PREFIX}... line; it is not an age key file",
            cluster=cluster,
            key_file=str(path),
        )
    try:
        derived = str(pyrage.x25519.Identity.from_str(secret.group(1)).to_public())
    except Exception:
        raise KeyStoreError(
            f"{path} holds a malformed age identity", cluster=cluster, key_file=str(path)
        ) from None
    if found and found.group(1) != derived:
        raise KeyStoreError(
            f"{path}: the '# public key:' comment does not match the identity in the file",
            cluster=cluster,
            key_file=str(path),
        )
    return derived


def publics_in_text(text: str) -> list[str]:
    """The recipients of every age identity in a key file's text (derived in memory, never shown)."""
    found = []
    for match in _SECRET_RE.finditer(text):
        try:
            found.append(str(pyrage.x25519.Identity.from_str(match.group(1)).to_public()))
        except Exception:
            continue
    return found


def publics_in_file(path: Path) -> list[str]:
    """The recipients of every age identity in a key file; empty if it cannot be read."""
    try:
        return publics_in_text(Path(path).read_text())
    except (OSError, UnicodeDecodeError):
        return []


def load(key_dir: Path, cluster: str) -> AgeKey:
    """The cluster's current key; KeyStoreError naming the file and ``keys.generate`` if there is none."""
    path = key_path(key_dir, cluster)
    return AgeKey(path=path, public=public_key(path, cluster=cluster))


def create(path: Path) -> AgeKey:
    """A new X25519 identity written to ``path`` (0600, atomic); refuses to replace an existing file."""
    path = Path(path)
    if path.exists():
        raise KeyStoreError(f"{path} already exists; refusing to overwrite it", key_file=str(path))
    _ensure_dir(path.parent)
    identity = pyrage.x25519.Identity.generate()
    atomic_write(path, render(identity))
    return AgeKey(path=path, public=str(identity.to_public()))


def archive(path: Path, key_dir: Path, cluster: str) -> Path:
    """Move a key file into the archive as ``<cluster>-<utc time>.agekey`` (0600); return its new path."""
    folder = archive_dir(key_dir)
    _ensure_dir(folder)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{cluster}-{stamp}{KEY_SUFFIX}"
    os.chmod(path, 0o600)
    os.replace(path, target)
    return target


def generate(key_dir: Path, cluster: str, *, force: bool = False) -> tuple[AgeKey, Path | None]:
    """A new current key for ``cluster``; with ``force`` the old one is archived first (never deleted)."""
    path = key_path(key_dir, cluster)
    archived: Path | None = None
    if path.exists():
        if not force:
            raise KeyStoreError(
                f"cluster {cluster} already has a key at {path}; pass --force to archive it and make a new "
                f"one (files encrypted to it will need `{progname()} secrets.scaffold` or "
                f"`{progname()} keys.rotate`)",
                cluster=cluster,
                key_file=str(path),
            )
        archived = archive(path, key_dir, cluster)
    return create(path), archived


def archived_keys(key_dir: Path, cluster: str) -> list[Path]:
    """The cluster's retired key files, oldest first."""
    folder = archive_dir(key_dir)
    return sorted(folder.glob(f"{cluster}-*{KEY_SUFFIX}")) if folder.is_dir() else []


def import_key(
    key_dir: Path, cluster: str, source: Path, *, force: bool = False
) -> tuple[AgeKey, Path | None]:
    """Copy an age-keygen key file into the store as the cluster's key (0600, atomic).

    The file must hold exactly one identity. An existing different key is archived with ``force``,
    refused without; importing the key the store already has changes nothing.
    """
    source = Path(source).expanduser()
    try:
        text = source.read_text()
    except OSError as exc:
        raise KeyStoreError(
            f"cannot read {source}: {exc.strerror}", cluster=cluster, key_file=str(source)
        ) from None
    publics = publics_in_text(text)
    if len(publics) != 1:
        what = "no age identity" if not publics else f"{len(publics)} age identities"
        raise KeyStoreError(
            f"{source} holds {what}; give a file with exactly one {SECRET_PREFIX}... line "
            "(the age-keygen format)",
            cluster=cluster,
            key_file=str(source),
        )
    public = publics[0]
    identity = pyrage.x25519.Identity.from_str(_SECRET_RE.search(text).group(1))  # type: ignore[union-attr]
    path = key_path(key_dir, cluster)
    archived: Path | None = None
    if path.exists():
        current = publics_in_file(path)
        if current == [public]:
            return AgeKey(path=path, public=public), None
        if not force:
            raise KeyStoreError(
                f"cluster {cluster} already has a different key at {path} ({', '.join(current) or '?'}); "
                "pass --force to archive it and import this one",
                cluster=cluster,
                key_file=str(path),
            )
        archived = archive(path, key_dir, cluster)
    _ensure_dir(path.parent)
    atomic_write(path, render(identity))
    return AgeKey(path=path, public=public), archived
