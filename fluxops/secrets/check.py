"""The one secret checker of a repository: ``invoke secrets.check``, ``layout.validate``, the pre-commit hook.

It looks at every file git would commit (:func:`fluxops.secrets.walk.repository_files`: tracked files
and untracked ones .gitignore does not exclude, hidden folders included). Whether a file is encrypted
is decided by its content (:mod:`fluxops.secrets.encrypted`), never by its name. Findings:

- ``private-key``: a file holds an age private key (``AGE-SECRET-KEY-1...`` or the post-quantum
  ``AGE-SECRET-KEY-PQ-1...``), any file type; the finding names the file and line, never the key.
- ``sops-unencrypted``: a file named ``*.sops.yaml``/``*.sops.yml`` (not the ``.sops.yaml`` config)
  holds no sops metadata; or an encrypted file holds a value in clear where its own rule
  (``encrypted_regex`` & co. in its metadata) says sops encrypts, i.e. added after encryption.
- ``plaintext-secret``: a ``kind: Secret`` with values in a file that is not sops-encrypted, whatever
  its name; a kustomize ``secretGenerator`` with literals, or reading files that are not encrypted.
- ``secret-damaged``: sops ciphertext without (complete) metadata, e.g. a truncated file. Restore it
  from git; re-encrypting it would encrypt the ciphertext twice.
- ``secret-tampered`` / ``secret-encrypted-twice`` / ``sops-decrypt``: found by decrypting (below).
- ``sops-recipients``: an encrypted file's age recipients differ from those of the ``.sops.yaml``
  creation rule matching it (files encrypted only to PGP, KMS, ... keys are named as such).
- ``sops-config``: ``.sops.yaml`` unreadable or with an invalid ``path_regex``, or no creation rule
  matches a ``*.sops.yaml`` file (a file encrypted under another name may have none).
- ``yaml``: a ``.yaml``/``.yml`` file YAML cannot parse (a templated ``stringData: {{ pw }}`` must not
  pass unseen). Exempt: files under the ``templates/`` folder of a Helm chart (the folder holding
  ``Chart.yaml``); Helm renders those, YAML does not read them. In a chart's templates a Secret
  value that is a template expression (``{{ ... }}``) is not a finding.
- ``key-store``: the key store (``key_dir``) is inside the checked repository.

Values sops leaves in clear by design are never findings: empty strings, nulls, empty maps and
empty lists (sops encrypts every other scalar, numbers and booleans included).

MAC verification: an encrypted file under ``k8s/clusters/<cluster>/`` whose cluster key is at hand
(the environment's SOPS_AGE_KEY_FILE / SOPS_AGE_KEY / SOPS_AGE_KEY_CMD, else
``<key_dir>/<cluster>.agekey``) is decrypted with sops, in parallel, in memory only; a MAC or value
that does not verify is ``secret-tampered``, ciphertext inside the decrypted text is
``secret-encrypted-twice``. A missing key, or a key that is not one of the file's recipients, is not
a finding; the file is then only checked by its readable parts.

Run as ``invoke secrets.check`` (key store: ``fluxops.key_dir`` of the invoke config) or
``python -m fluxops.secrets.check [ROOT] [--key-dir DIR]`` (the pre-commit hook; key store: --key-dir,
else $INVOKE_FLUXOPS_KEY_DIR, else ``fluxops.key_dir`` of ROOT/invoke.yaml, else ~/.config/sops/age).
Exit status: 0 no finding, 1 findings, 2 the check could not run.
"""

from __future__ import annotations

import argparse
import mmap
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml
from ruamel.yaml import YAML

from fluxops import clusters
from fluxops.errors import FluxopsError, KeyStoreError, SopsError
from fluxops.secrets import keystore, rules, walk
from fluxops.secrets.encrypted import (
    ENC_PREFIX,
    MAX_BYTES,
    Inspection,
    inspect,
    inspect_text,
)

if TYPE_CHECKING:
    from fluxops.secrets.sops import KeySource, Sops

SOPS_NAME_SUFFIXES = (".sops.yaml", ".sops.yml")
YAML_SUFFIXES = (".yaml", ".yml")
SECRET_SECTIONS = ("data", "stringData")
CHART_FILES = ("Chart.yaml", "Chart.yml")
DEFAULT_KEY_DIR = Path("~/.config/sops/age")
KEY_DIR_ENV = "INVOKE_FLUXOPS_KEY_DIR"
VERIFY_SUFFIXES = (".yaml", ".yml", ".json", ".env", ".ini")  # sops picks its format by extension
# An age identity is bech32: the HRP (AGE-SECRET-KEY- for X25519, AGE-SECRET-KEY-PQ- for the hybrid
# ML-KEM-768 + X25519 key), "1", then 58 characters (32 bytes of key or seed, 6 of checksum) from
# the bech32 alphabet, which has no 1, B, I or O. age writes it upper case; lower case is matched too.
_BECH32 = "02-9ACDEFGHJKLMNPQRSTUVWXYZ"
PRIVATE_KEY_RE = re.compile(
    re.escape(keystore.SECRET_PREFIX).encode() + rb"(?:PQ-)?1[" + _BECH32.encode() + rb"]{58}", re.IGNORECASE
)
_VALUE_MARKER = "Could not decrypt value"
_FORMAT_MARKER = "does not match sops' data format"
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{32,}")
# text without a match cannot hold sops metadata or ciphertext (YAML, JSON, dotenv, INI as sops writes them)
_SOPS_HINT = re.compile(r'^sops:|"sops"\s*:|^sops_|^\[sops\]|ENC\[', re.MULTILINE)
_SECRET_HINTS = ("Secret", "secretGenerator")
# the variables fluxops.secrets.sops.environment_key reads: without them and a key store, nothing decrypts
_KEY_ENV = ("SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD")
_FastLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
RESTORE = "restore it from git (`git checkout -- {path}`) or a backup"


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: which file (relative to the root), why, and where in it when known.

    ``document`` (index among the file's non-empty YAML documents) and ``keys`` (the path inside
    it) let a caller with line-numbered YAML point at the spot; ``line`` is set when known here.
    """

    path: str
    reason: str
    code: str = "secret"
    line: int = 0
    document: int = field(default=0, compare=False)
    keys: tuple[Any, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.reason}"


@dataclass
class Report:
    """What a check found, and how many encrypted files it saw and verified by decrypting."""

    findings: list[Finding] = field(default_factory=list)
    encrypted: int = 0
    verified: int = 0


# -- what sops encrypts -------------------------------------------------------------------------


def left_in_clear(value: Any) -> bool:
    """True for a value sops never encrypts: an empty string, null, an empty map or list."""
    return value is None or (isinstance(value, str | dict | list) and len(value) == 0)


def _leaves(node: Any, trail: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*trail, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*trail, index))
    else:
        yield trail, node


def _template_expression(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def has_values(section: Any, *, templated: bool = False) -> bool:
    """True if a data/stringData section holds a value sops would encrypt (with ``templated``: a literal)."""
    return any(
        not left_in_clear(value) and not (templated and _template_expression(value))
        for _, value in _leaves(section)
    )


def plaintext_secret(document: Any, *, templated: bool = False) -> bool:
    """True for a ``kind: Secret`` with values and no sops metadata."""
    if not isinstance(document, dict) or document.get("kind") != "Secret":
        return False
    if isinstance(document.get("sops"), dict):
        return False
    return any(has_values(document.get(key), templated=templated) for key in SECRET_SECTIONS)


def is_sops_name(name: str) -> bool:
    """True for a file named ``*.sops.yaml``/``*.sops.yml``: the convention says it must be encrypted."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(SOPS_NAME_SUFFIXES) and base not in SOPS_NAME_SUFFIXES


def _sops_suffix(name: str) -> str:
    return next(suffix for suffix in SOPS_NAME_SUFFIXES if name.endswith(suffix))


def _picker(meta: dict[str, Any]) -> Callable[[str], bool | None]:
    """How sops picked encrypted keys: True = encrypt the subtree, False = leave it, None = inherit."""
    if meta.get("encrypted_regex"):
        pattern = re.compile(str(meta["encrypted_regex"]))
        return lambda key: True if pattern.search(key) else None
    if meta.get("unencrypted_regex"):
        pattern = re.compile(str(meta["unencrypted_regex"]))
        return lambda key: False if pattern.search(key) else None
    if meta.get("encrypted_suffix"):
        suffix = str(meta["encrypted_suffix"])
        return lambda key: True if key.endswith(suffix) else None
    suffix = str(meta.get("unencrypted_suffix") or "_unencrypted")
    return lambda key: False if key.endswith(suffix) else None


def plaintext_values(document: dict[str, Any], meta: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """Key paths of values in clear that the document's own sops rule says are encrypted."""
    picks = _picker(meta)
    inside = not (meta.get("encrypted_regex") or meta.get("encrypted_suffix"))

    def walk_node(node: Any, encrypted: bool, trail: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        if isinstance(node, dict):
            for key, value in node.items():
                decided = picks(str(key))
                yield from walk_node(value, encrypted if decided is None else decided, (*trail, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk_node(value, encrypted, (*trail, index))
        elif encrypted and not left_in_clear(node) and not str(node).startswith(ENC_PREFIX):
            yield trail

    body = {k: v for k, v in document.items() if k != "sops"}
    yield from walk_node(body, inside, ())


def _dotted(trail: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in trail).lstrip(".")


# -- the repository's files --------------------------------------------------------------------


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _in_scope(rel: str, within: Sequence[str]) -> bool:
    return not within or any(rel == w.rstrip("/") or rel.startswith(w.rstrip("/") + "/") for w in within)


def _parses(text: str) -> bool:
    try:
        for _ in yaml.compose_all(text, Loader=_FastLoader):
            pass
    except yaml.YAMLError:
        return False
    return True


def _fast_documents(text: str) -> list[Any] | None:
    try:
        return [doc for doc in yaml.load_all(text, Loader=_FastLoader) if doc is not None]
    except Exception:  # any YAML or constructor error: the full inspection says what it is
        return None


def quick_inspect(path: Path, *, syntax: bool = True) -> Inspection:
    """:func:`~fluxops.secrets.encrypted.inspect`, faster for the many files that cannot be encrypted.

    Only text with a sops hint (a ``sops:`` block, ``ENC[``, sops' dotenv/INI keys) or a
    ``*.sops.yaml`` name gets the full inspection. Other text is plaintext: parsed by libyaml, to
    documents when it may hold a Secret or secretGenerator, else only to tell it is valid YAML;
    what libyaml cannot read goes to the full inspection, which names the problem. Without
    ``syntax`` text that may hold no secret is not parsed at all.
    """
    try:
        if path.stat().st_size > MAX_BYTES:
            return inspect(path)
        text = path.read_bytes().decode()
    except (OSError, UnicodeDecodeError):
        return inspect(path)
    if is_sops_name(path.name) or _SOPS_HINT.search(text):
        return inspect_text(text, path)
    if any(hint in text for hint in _SECRET_HINTS):
        documents = _fast_documents(text)
        return inspect_text(text, path) if documents is None else Inspection(path, "plaintext", documents)
    if syntax and path.suffix in YAML_SUFFIXES and not _parses(text):
        return inspect_text(text, path)
    return Inspection(path, "plaintext")


def in_chart_templates(root: Path, path: Path) -> bool:
    """True for a file under a Helm chart's ``templates/`` folder (one with a Chart.yaml beside it)."""
    for folder in path.parents:
        if folder == root or not folder.is_relative_to(root):
            break
        if folder.name == "templates" and any((folder.parent / chart).is_file() for chart in CHART_FILES):
            return True
    return False


def private_key_line(path: Path) -> int:
    """The line of the first age private key in a file (0 if none); read through mmap, never copied out."""
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return 0
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                match = PRIVATE_KEY_RE.search(data)
                return data[: match.start()].count(b"\n") + 1 if match else 0
    except (OSError, ValueError):
        return 0


def private_keys(root: Path, files: Iterable[Path]) -> list[Finding]:
    """Files that hold an age private key (named with the line; the key itself is never echoed)."""
    findings = []
    for path in files:
        line = private_key_line(path)
        if line:
            findings.append(
                Finding(
                    _rel(root, path),
                    "holds an age private key; remove it (and rotate that key: `invoke keys.rotate`), "
                    "keys live in the key store outside the repository",
                    "private-key",
                    line,
                )
            )
    return findings


def key_store_inside(root: Path, key_dir: Path | None) -> list[Finding]:
    """A finding when the key store is inside the repository (its keys are one `git add` from a leak)."""
    if key_dir is None:
        return []
    store = Path(key_dir).expanduser().resolve()
    if not store.is_relative_to(Path(root).resolve()):
        return []
    rel = store.relative_to(Path(root).resolve()).as_posix()
    return [
        Finding(
            rel if rel != "." else ".",
            "the age key store (fluxops.key_dir) is inside the repository; move it out "
            f"(e.g. {DEFAULT_KEY_DIR}) and set fluxops.key_dir to it",
            "key-store",
        )
    ]


# -- .sops.yaml ---------------------------------------------------------------------------------


@dataclass
class _Config:
    """The creation rules, loaded once, and what is wrong with them."""

    rules: list[dict[str, Any]] | None
    findings: list[Finding]

    def rule_for(self, rel: str) -> dict[str, Any] | None:
        """The rule sops applies to a path: the first whose path_regex matches (bad regexes skipped)."""
        for rule in self.rules or []:
            regex = rule.get("path_regex") if isinstance(rule, dict) else None
            try:
                if regex is None or re.search(str(regex), rel):
                    return rule
            except re.error:
                continue
        return None


def _load_config(root: Path) -> _Config:
    name = rules.CONFIG_NAME
    try:
        loaded = rules.rules(root)
    except FluxopsError as exc:
        return _Config(None, [Finding(name, f"cannot read the sops config: {exc}", "sops-config")])
    findings = []
    for index, rule in enumerate(loaded):
        regex = rule.get("path_regex") if isinstance(rule, dict) else None
        if regex is None:
            continue
        try:
            re.compile(str(regex))
        except re.error as exc:
            findings.append(
                Finding(
                    name,
                    f"creation rule {index + 1}: path_regex {str(regex)!r} is not a valid regular "
                    f"expression ({exc})",
                    "sops-config",
                    keys=("creation_rules", index, "path_regex"),
                )
            )
    return _Config(loaded, findings)


# -- one file -----------------------------------------------------------------------------------


def _recipient_findings(rel: str, inspection: Inspection, config: _Config) -> list[Finding]:
    have = sorted(inspection.recipients)
    others = [s for s in inspection.key_services if s != "age"]
    if config.rules is None:
        return []
    rule = config.rule_for(rel)
    if rule is None and not is_sops_name(rel):
        return []  # encrypted by hand outside the rules' naming: nothing to compare against
    if rule is None:
        return [
            Finding(
                rel,
                "no creation rule in .sops.yaml matches this file, so sops cannot re-key it "
                f"(recipients {', '.join(have) or 'none'}); add one with `invoke keys.generate`",
                "sops-config",
            )
        ]
    want = sorted(rules.recipients(rule))
    if have == want:
        return []
    if not have and others:
        what = f"encrypted only to {', '.join(others)} key(s), no age recipient"
    else:
        what = f"recipients {', '.join(have)}" + (f" (and {', '.join(others)} keys)" if others else "")
    return [
        Finding(
            rel,
            f"{what}; its .sops.yaml rule names {', '.join(want) or 'no age recipient'}. Re-key it with "
            "`invoke secrets.rekey` (needs a key that decrypts it) or `invoke secrets.scaffold`",
            "sops-recipients",
            keys=("sops",),
        )
    ]


def _encrypted_findings(rel: str, inspection: Inspection, config: _Config) -> list[Finding]:
    if not inspection.documents:  # dotenv / INI: only their metadata keys are readable here
        return []
    findings = []
    for index, document in enumerate(inspection.documents):
        meta = document.get("sops") if isinstance(document, dict) else None
        if not isinstance(meta, dict):
            continue
        try:
            trails = list(plaintext_values(document, meta))
        except re.error:
            findings.append(
                Finding(rel, "its sops metadata has an invalid encrypted/unencrypted regex", "secret-damaged")
            )
            continue
        for trail in trails:
            findings.append(
                Finding(
                    rel,
                    f"plaintext value at {_dotted(trail)} (added after encryption); re-enter it with "
                    "`invoke secrets.edit`",
                    "sops-unencrypted",
                    document=index,
                    keys=trail,
                )
            )
    return findings + _recipient_findings(rel, inspection, config)


def _generator_findings(
    root: Path, path: Path, rel: str, index: int, document: dict[str, Any]
) -> list[Finding]:
    generators = document.get("secretGenerator")
    kustomization = document.get("kind") == "Kustomization" or path.name in clusters.KUSTOMIZATION_FILES
    if not kustomization or not isinstance(generators, list):
        return []
    findings = []
    for number, generator in enumerate(generators):
        if not isinstance(generator, dict):
            continue
        name = generator.get("name", "?")
        where = {"code": "plaintext-secret", "document": index, "keys": ("secretGenerator", number)}
        if generator.get("literals"):
            findings.append(
                Finding(rel, f"secretGenerator {name} has literals: plaintext values in git", **where)
            )
        sources = [str(s) for key in ("files", "envs") for s in generator.get(key) or []]
        if generator.get("env"):
            sources.append(str(generator["env"]))
        for source in sources:
            target = (path.parent / source.split("=", 1)[-1]).resolve()
            if not target.is_relative_to(root) or inspect(target).state != "encrypted":
                findings.append(
                    Finding(
                        rel,
                        f"secretGenerator {name} reads {source}, which is not sops-encrypted (Flux "
                        "decrypts generator files only when they are)",
                        **where,
                    )
                )
    return findings


def check_file(root: Path, path: Path, config: _Config | None = None) -> list[Finding]:
    """The findings of one file's readable content (no decryption, no key scan)."""
    root, path = Path(root).absolute(), Path(path).absolute()
    return inspection_findings(root, inspect(path), config if config is not None else _load_config(root))


def inspection_findings(root: Path, inspection: Inspection, config: _Config) -> list[Finding]:
    """The findings of a file's readable content, from its inspection."""
    path = inspection.path
    rel = _rel(root, path)
    named = is_sops_name(path.name)
    if inspection.state == "damaged":
        problem = inspection.problem.replace("`git checkout -- FILE`", f"`git checkout -- {rel}`")
        return [Finding(rel, f"damaged: {problem}", "secret-damaged")]
    if inspection.state == "unparsable":
        if path.suffix in YAML_SUFFIXES and not in_chart_templates(root, path):
            extra = "; cannot tell whether it is encrypted" if named else ""
            return [Finding(rel, f"{inspection.problem}{extra}", "yaml")]
        return []
    if inspection.state == "encrypted":
        return _encrypted_findings(rel, inspection, config)
    findings = []
    if named:
        findings.append(
            Finding(
                rel,
                f"named *{_sops_suffix(path.name)} but not encrypted (no sops metadata); "
                "run `invoke secrets.encrypt`",
                "sops-unencrypted",
            )
        )
        if config.rules is not None and config.rule_for(rel) is None:
            findings.append(Finding(rel, "no creation rule in .sops.yaml matches this file", "sops-config"))
    templated = in_chart_templates(root, path)
    for index, document in enumerate(inspection.documents):
        if not named and plaintext_secret(document, templated=templated):
            name = (document.get("metadata") or {}).get("name", "?") if isinstance(document, dict) else "?"
            findings.append(
                Finding(
                    rel,
                    f"plaintext Secret {name}: move it to a *.sops.yaml file and run `invoke "
                    "secrets.encrypt` (or make it with `invoke secrets.new`); if it was committed, "
                    "change its values",
                    "plaintext-secret",
                    document=index,
                )
            )
        if isinstance(document, dict):
            findings.extend(_generator_findings(root, path, rel, index, document))
    return findings


# -- decrypting ---------------------------------------------------------------------------------


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
            chosen.append(_Candidate(item.path, _rel(root, item.path), source, public is not None))
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
    if _FORMAT_MARKER in verdict.detail:
        reason = f"a value in clear sits where sops encrypts (added without sops); {restore}"
        return True, Finding(item.rel, reason, "sops-unencrypted")
    if _VALUE_MARKER in verdict.detail:
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


# -- the whole repository -----------------------------------------------------------------------


def scan(
    root: Path, key_dir: Path | None = None, *, within: Sequence[str] = (), syntax: bool = True
) -> Report:
    """Every finding under ``root`` (or only in the ``within`` paths, relative to it), sorted.

    ``key_dir`` is the key store: checked to be outside the repository and used, with the
    environment's key, to verify MACs. Without it only an environment key verifies. A caller that
    reports YAML syntax errors itself passes ``syntax=False``: files that cannot hold a secret are
    then not parsed (a secret file that does not parse is still reported).
    """
    root = Path(root).absolute()
    files = [p for p in walk.repository_files(root) if _in_scope(_rel(root, p), within)]
    report = Report(findings=key_store_inside(root, key_dir) + private_keys(root, files))
    config = _load_config(root)
    if _in_scope(rules.CONFIG_NAME, within):
        report.findings.extend(config.findings)
    encrypted: list[Inspection] = []
    for path in files:
        if path.name == rules.CONFIG_NAME or not walk.is_candidate(path):
            continue
        inspection = quick_inspect(path, syntax=syntax)
        report.findings.extend(inspection_findings(root, inspection, config))
        if inspection.state == "encrypted":
            encrypted.append(inspection)
    report.encrypted = len(encrypted)
    report.verified, macs = verify_macs(root, key_dir, encrypted)
    in_clear = {f.path for f in report.findings if f.code == "sops-unencrypted"}
    report.findings.extend(f for f in macs if not (f.code == "sops-unencrypted" and f.path in in_clear))
    report.findings.sort()
    return report


def check(
    root: Path, key_dir: Path | None = None, *, within: Sequence[str] = (), syntax: bool = True
) -> list[Finding]:
    """Every finding under ``root``, sorted by file (see :func:`scan`)."""
    return scan(root, key_dir, within=within, syntax=syntax).findings


# -- command line -------------------------------------------------------------------------------


def default_key_dir(root: Path) -> Path:
    """The hook's key store: $INVOKE_FLUXOPS_KEY_DIR, else invoke.yaml's fluxops.key_dir, else the default."""
    value: Any = os.environ.get(KEY_DIR_ENV)
    if not value:
        try:
            config = YAML(typ="safe", pure=False).load((Path(root) / "invoke.yaml").read_text())
            value = ((config or {}).get("fluxops") or {}).get("key_dir")
        except Exception:
            value = None
    if not isinstance(value, str) or not value:
        return DEFAULT_KEY_DIR.expanduser()
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(root).absolute() / path


def emit(lines: Iterable[str], stream: TextIO) -> bool:
    """Write lines and flush; False (and later writes silenced) when the reader went away (``| head``)."""
    try:
        for line in lines:
            stream.write(f"{line}\n")
        stream.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
        return False
    return True


def summary(report: Report) -> str:
    """The closing line: problems found, or what was checked."""
    if report.findings:
        return f"{len(report.findings)} secret problem(s) found"
    return f"secrets: ok ({report.encrypted} encrypted file(s), {report.verified} verified by decrypting)"


def main(argv: list[str] | None = None) -> int:
    """Command line: findings and a summary on stderr; exit 1 on findings, 2 if the check cannot run."""
    parser = argparse.ArgumentParser(
        prog="python -m fluxops.secrets.check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("root", nargs="?", default=".", help="repository root (default: current folder)")
    parser.add_argument("files", nargs="*", help="ignored: the whole repository is always checked")
    parser.add_argument("--key-dir", help="age key store (default: see the module help)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    key_dir = Path(args.key_dir).expanduser() if args.key_dir else default_key_dir(root)
    try:
        report = scan(root, key_dir)
    except FluxopsError as exc:
        emit([f"error: {exc}"], sys.stderr)
        return 2
    emit([*map(str, report.findings), summary(report)], sys.stderr)
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
