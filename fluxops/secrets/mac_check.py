"""Decrypting to verify: every encrypted cluster file whose key is at hand, its MAC and its values.

sops' own message is never repeated for a MAC failure: it carries a hash of the plaintext values.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fluxops import clusters
from fluxops.errors import KeyStoreError, SopsError
from fluxops.secrets import keystore, rules
from fluxops.secrets.encrypted import Inspection
from fluxops.secrets.findings import RESTORE, Finding, relative

if TYPE_CHECKING:
    from fluxops.secrets.sops import KeySource, Sops


VERIFY_SUFFIXES = (".yaml", ".yml", ".json", ".env", ".ini")  # sops picks its format by extension


_HEX_RUN = re.compile(r"[0-9A-Fa-f]{32,}")


_KEY_ENV = ("SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD")


@dataclass(frozen=True)
class _Candidate:
    """An encrypted file and the cluster key to decrypt it with."""

    path: Path
    rel: str
    key: KeySource
    listed: bool  # the store key's recipient is one of the file's: a failure to unwrap is damage


def key_at_hand(key_dir: Path | None, cluster: str) -> tuple[KeySource, str | None] | None:
    """The key a sops call for the cluster would use (environment, then key store) and, for a key
    store file, its recipient; None when there is none (or the store file is not a key)."""
    from fluxops.secrets import keys  # the sops runner is loaded only when something may decrypt
    from fluxops.secrets.sops import environment_key

    if key_dir is None:
        from_env = environment_key(cluster)
        return (from_env, None) if from_env is not None else None
    try:
        source = keys.decryption_key(key_dir, cluster)
        store = keystore.key_path(key_dir, cluster)
        return source, keystore.public_key(store) if source.key_file == str(store) else None
    except KeyStoreError:
        return None


def _candidates(root: Path, key_dir: Path | None, inspections: list[Inspection]) -> list[_Candidate]:
    if not rules.config_path(root).is_file() or (key_dir is None and not any(map(os.environ.get, _KEY_ENV))):
        return []
    by_cluster: dict[str, list[Inspection]] = {}
    for item in inspections:
        cluster = clusters.cluster_of(root, item.path)
        if cluster and item.path.suffix in VERIFY_SUFFIXES:
            by_cluster.setdefault(cluster, []).append(item)
    chosen = []
    for cluster, items in by_cluster.items():
        held = key_at_hand(key_dir, cluster)
        if held is None:
            continue
        source, public = held
        for item in items:
            if public is not None and item.documents and public not in item.recipients:
                continue  # encrypted to other keys: this one cannot tell
            chosen.append(_Candidate(item.path, relative(root, item.path), source, public is not None))
    return chosen


def _decrypt_finding(sops: Sops, item: _Candidate) -> tuple[bool, Finding | None]:
    """(verified, finding) for one file: :meth:`Sops.verify` decrypts it in memory; judge its verdict.

    sops' own message is not repeated for a MAC mismatch: it carries the hash of the plaintext values.
    """
    from fluxops.secrets.sops import Verdict

    restore = RESTORE.format(path=item.rel)
    try:
        verdict = sops.verify(item.path, item.key)
    except SopsError as exc:
        verdict = Verdict("error", str(exc))
    if verdict.state == "ok":
        return True, None
    if verdict.state == "double":
        reason = f"encrypted twice: it decrypts to sops ciphertext (encrypted again); {restore}"
        return True, Finding(item.rel, reason, "secret-encrypted-twice")
    if verdict.state == "tampered":
        reason = f"tampered: its MAC does not verify (changed without sops); {restore}"
        return True, Finding(item.rel, reason, "secret-tampered")
    if verdict.state == "no-key":
        if not item.listed:
            return False, None  # the key at hand is not one of its recipients: nothing to verify
        reason = (
            "tampered: the cluster key is one of its recipients but cannot unwrap its data key "
            f"(the sops metadata was edited); {restore}"
        )
        return True, Finding(item.rel, reason, "secret-tampered")
    if verdict.state == "in-clear":
        reason = f"a value in clear sits where sops encrypts (added without sops); {restore}"
        return True, Finding(item.rel, reason, "sops-unencrypted")
    if verdict.state == "tampered-value":
        reason = f"tampered: an encrypted value does not verify (changed without sops); {restore}"
        return True, Finding(item.rel, reason, "secret-tampered")
    detail = _HEX_RUN.sub("...", verdict.detail)[:200]
    return False, Finding(item.rel, f"sops cannot decrypt it: {detail}", "sops-decrypt")


def verify_macs(root: Path, key_dir: Path | None, inspections: list[Inspection]) -> tuple[int, list[Finding]]:
    """Decrypt, in parallel, every encrypted cluster file whose key is at hand: (verified, findings)."""
    chosen = _candidates(Path(root).absolute(), key_dir, inspections)
    if not chosen:
        return 0, []
    from fluxops.secrets.sops import Sops, binary, parallel

    binary()  # no sops at all is an error of the check, not a finding per file
    sops = Sops(root)
    results = parallel(lambda item: _decrypt_finding(sops, item), chosen)
    return sum(1 for ok, _ in results if ok), [f for _, f in results if f is not None]
