"""The one rule for "an encrypted file": its content carries a sops metadata block, whatever its name.

sops writes a ``sops:`` mapping at the top level of every YAML or JSON document it encrypts (a
``sops_*`` key set in dotenv and INI files), and Flux's kustomize-controller decrypts any manifest
that has one. So the content decides, never the file name. Every task asks this module:

- ``plaintext``: no metadata and no sops ciphertext - nothing to decrypt;
- ``encrypted``: a complete metadata block (mac, lastmodified, at least one key) in every document;
- ``damaged``: sops ciphertext without metadata (a truncated file), or a metadata block that is
  incomplete - such a file is reported, never re-encrypted or rewritten;
- ``unparsable``: not YAML at all (nothing can be said; reported by the checker).

Only the readable parts are looked at here; whether the MAC holds needs the key (see ``sops``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML

ENC_PREFIX = "ENC["
CIPHERTEXT_RE = re.compile(r"ENC\[AES256_GCM,data:")
KEY_SERVICES = ("age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault")
# dotenv / INI files sops encrypted: their metadata lives in sops_* keys or a [sops] section
_FLAT_META_RE = re.compile(r"^(sops_mac\s*=\s*ENC\[|\[sops\]\s*$)", re.MULTILINE)
_YAML_SUFFIXES = (".yaml", ".yml", ".json")
MAX_BYTES = 4 << 20

State = Literal["plaintext", "encrypted", "damaged", "unparsable"]


@dataclass(frozen=True)
class Inspection:
    """What a file's readable content says about its encryption."""

    path: Path
    state: State
    documents: list[Any] = field(default_factory=list)
    problem: str = ""

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``sops:`` block of the first document (empty unless encrypted)."""
        for doc in self.documents:
            meta = _meta(doc)
            if meta is not None:
                return meta
        return {}

    @property
    def recipients(self) -> list[str]:
        """The age recipients the file's data key is wrapped for, in file order."""
        return age_recipients(self.metadata)

    @property
    def key_services(self) -> list[str]:
        """Which kinds of key the file is encrypted to (``age``, ``pgp``, ``kms``, ...)."""
        return key_services(self.metadata)

    @property
    def age_only(self) -> bool:
        """True when every key of the file is an age key (fluxops manages those; others it leaves be)."""
        return self.key_services == ["age"]


def _safe_yaml() -> YAML:
    return YAML(typ="safe", pure=False)


def _meta(document: Any) -> dict[str, Any] | None:
    if isinstance(document, dict) and isinstance(document.get("sops"), dict):
        return document["sops"]
    return None


def age_recipients(meta: dict[str, Any]) -> list[str]:
    """The age recipients of a metadata block (key groups included)."""
    entries = list(meta.get("age") or [])
    for group in meta.get("key_groups") or []:
        if isinstance(group, dict):
            entries.extend(group.get("age") or [])
    return [str(e.get("recipient")) for e in entries if isinstance(e, dict) and e.get("recipient")]


def key_services(meta: dict[str, Any]) -> list[str]:
    """The kinds of key named by a metadata block, in KEY_SERVICES order."""
    groups = [meta, *(g for g in meta.get("key_groups") or [] if isinstance(g, dict))]
    return [name for name in KEY_SERVICES if any(g.get(name) for g in groups)]


def _metadata_problem(meta: dict[str, Any]) -> str:
    if not str(meta.get("mac") or "").startswith(ENC_PREFIX):
        return "its sops metadata has no encrypted mac (the block was cut or edited by hand)"
    if not meta.get("lastmodified"):
        return "its sops metadata has no lastmodified (the block was cut or edited by hand)"
    if not key_services(meta):
        return "its sops metadata names no key (age, pgp, kms, ...) that could decrypt it"
    return ""


def has_ciphertext(node: Any) -> bool:
    """True if any string in ``node`` is a sops ciphertext (``ENC[AES256_GCM,data:...``)."""
    if isinstance(node, dict):
        return any(has_ciphertext(v) for k, v in node.items() if k != "sops")
    if isinstance(node, list):
        return any(has_ciphertext(v) for v in node)
    return isinstance(node, str) and CIPHERTEXT_RE.match(node) is not None


RESTORE = "restore it from git (`git checkout -- FILE`) or a backup; never re-encrypt it"


def inspect_text(text: str, path: Path) -> Inspection:
    """The encryption state of a file's text (``path`` only names it)."""
    path = Path(path)
    if _FLAT_META_RE.search(text) and not path.name.endswith(_YAML_SUFFIXES):
        return Inspection(path, "encrypted")
    try:
        documents = [doc for doc in _safe_yaml().load_all(text) if doc is not None]
    except Exception as exc:
        if CIPHERTEXT_RE.search(text) or re.search(r"^sops:", text, re.MULTILINE):
            return Inspection(path, "damaged", problem=f"holds sops data but is not valid YAML; {RESTORE}")
        first = str(exc).strip().splitlines()
        return Inspection(path, "unparsable", problem=f"not valid YAML ({first[-1] if first else exc})")
    metas = [_meta(doc) for doc in documents]
    if any(meta is not None for meta in metas):
        if any(meta is None for meta in metas):
            return Inspection(
                path, "damaged", documents, f"only some of its documents carry sops metadata; {RESTORE}"
            )
        for meta in metas:
            problem = _metadata_problem(meta or {})
            if problem:
                return Inspection(path, "damaged", documents, f"{problem}; {RESTORE}")
        return Inspection(path, "encrypted", documents)
    if any(has_ciphertext(doc) for doc in documents) or CIPHERTEXT_RE.search(text):
        return Inspection(
            path,
            "damaged",
            documents,
            f"holds sops ciphertext (ENC[...]) but no sops metadata: it was truncated or its `sops:` "
            f"block removed; {RESTORE}",
        )
    return Inspection(path, "plaintext", documents)


def inspect(path: Path) -> Inspection:
    """The encryption state of the file at ``path`` (unreadable or huge files count as plaintext-less)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            return Inspection(path, "plaintext")
        raw = path.read_bytes()
    except OSError as exc:
        return Inspection(path, "unparsable", problem=f"cannot read it: {exc.strerror}")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return Inspection(path, "plaintext")
    return inspect_text(text, path)


def is_encrypted(path: Path) -> bool:
    """True when the file carries a complete sops metadata block."""
    return inspect(path).state == "encrypted"


def double_encrypted(plaintext: str) -> bool:
    """True when decrypted content still holds sops ciphertext: the file was encrypted twice."""
    return CIPHERTEXT_RE.search(plaintext) is not None


def file_recipients(path: Path) -> list[str]:
    """The age recipients an encrypted file is wrapped for (from its readable metadata)."""
    return inspect(path).recipients
