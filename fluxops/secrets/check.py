"""The plaintext guard: every secret in the repository is encrypted, to the right recipients.

Findings: a file in the work tree that holds an age private key; a ``*.sops.yaml`` that sops has
not encrypted; a ``kind: Secret`` outside a ``*.sops.yaml``;
an encrypted file whose age recipients differ from its creation rule; a value under an encrypted key
(``data``/``stringData`` or the file's own ``encrypted_regex``) that is not ``ENC[...]``, i.e. added
after encryption. Run as ``invoke secrets.check`` or ``python -m fluxops.secrets.check [ROOT]``
(the pre-commit hook).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from fluxops.secrets import rules
from fluxops.secrets.encrypted import inspect_text
from fluxops.secrets.keystore import SECRET_PREFIX
from fluxops.secrets.manifests import SOPS_SUFFIX

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".sandbox", ".tox", ".mypy_cache"}
YAML_SUFFIXES = (".yaml", ".yml")
DEFAULT_ENCRYPTED_REGEX = rules.ENCRYPTED_REGEX
# an age identity: bech32 of HRP "age-secret-key-", upper case ("1" separator, 58+ data characters)
PRIVATE_KEY_RE = re.compile(re.escape(SECRET_PREFIX.encode()) + rb"1[02-9ACDEFGHJKLMNPQRSTUVWXYZ]{58}")
MAX_SCAN_BYTES = 1 << 20


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: which file and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def yaml_files(root: Path) -> Iterator[Path]:
    """Every YAML file of the repository, skipping VCS, virtualenv and cache folders."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not (d.startswith(".") and d != ".github"))
        for name in sorted(files):
            if name.endswith(YAML_SUFFIXES):
                yield Path(folder) / name


def _documents(text: str) -> list[Any]:
    return [doc for doc in YAML(typ="safe", pure=False).load_all(text)]


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


def _default_encrypted(meta: dict[str, Any]) -> bool:
    return not (meta.get("encrypted_regex") or meta.get("encrypted_suffix"))


def _plain_values(node: Any, picks: Callable[[str], bool | None], inside: bool, trail: str) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            decided = picks(str(key))
            here = inside if decided is None else decided
            yield from _plain_values(value, picks, here, f"{trail}.{key}" if trail else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _plain_values(value, picks, inside, f"{trail}[{index}]")
    elif inside and node is not None and not (isinstance(node, str) and node.startswith("ENC[")):
        yield trail


def check_file(root: Path, path: Path) -> list[Finding]:
    """Findings for one YAML file."""
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    try:
        documents = _documents(path.read_text())
    except Exception as exc:
        if path.name.endswith(SOPS_SUFFIX):
            return [Finding(rel, f"not parsable YAML ({type(exc).__name__}); cannot tell if it is encrypted")]
        return []
    is_sops_name = path.name.endswith(SOPS_SUFFIX)
    if not is_sops_name:
        if any(isinstance(d, dict) and d.get("kind") == "Secret" for d in documents):
            return [Finding(rel, "kind: Secret outside a *.sops.yaml file (move it into one and encrypt it)")]
        return []
    findings: list[Finding] = []
    meta = inspect_text(path.read_text(), path).metadata if len(documents) == 1 else None
    if not meta:
        return [Finding(rel, "not encrypted by sops (no sops metadata); run `invoke secrets.encrypt`")]
    body = {k: v for k, v in documents[0].items() if k != "sops"}
    try:
        picks = _picker(meta)
    except re.error:
        return [Finding(rel, "invalid encrypted/unencrypted regex in its sops metadata")]
    for trail in _plain_values(body, picks, _default_encrypted(meta), ""):
        findings.append(Finding(rel, f"plaintext value at {trail} (added after encryption); re-encrypt it"))
    have = sorted(str(i.get("recipient")) for i in meta.get("age") or [] if isinstance(i, dict))
    rule = rules.rule_for(root, rel)
    if rule is None:
        findings.append(Finding(rel, f"no creation rule in .sops.yaml matches this file (recipients {have})"))
    else:
        want = sorted(rules.recipients(rule))
        if have != want:
            findings.append(
                Finding(
                    rel,
                    f"recipients {', '.join(have) or 'none'} do not match its .sops.yaml rule "
                    f"({', '.join(want) or 'none'}); re-encrypt with `invoke secrets.scaffold` "
                    "or `sops updatekeys`",
                )
            )
    return findings


def _all_files(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not (d.startswith(".") and d != ".github"))
        for name in sorted(files):
            yield Path(folder) / name


def private_keys(root: Path) -> list[Finding]:
    """Files in the work tree that hold an age private key (the key itself is never echoed)."""
    findings = []
    for path in _all_files(root):
        try:
            if path.is_symlink() or path.stat().st_size > MAX_SCAN_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if PRIVATE_KEY_RE.search(data):
            rel = path.relative_to(root).as_posix()
            findings.append(
                Finding(rel, "holds an age private key; move it to the key store (outside the repository)")
            )
    return findings


def check(root: Path) -> list[Finding]:
    """Every finding in the repository at ``root``, sorted by file."""
    root = Path(root).absolute()
    findings: list[Finding] = private_keys(root)
    for path in yaml_files(root):
        if path.name == rules.CONFIG_NAME:
            continue
        findings.extend(check_file(root, path))
    return sorted(findings)


def main(argv: list[str] | None = None) -> int:
    """Command line: print findings, exit 1 if there are any."""
    parser = argparse.ArgumentParser(
        prog="python -m fluxops.secrets.check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("root", nargs="?", default=".", help="repository root (default: current folder)")
    parser.add_argument("files", nargs="*", help="ignored: the whole repository is always checked")
    args = parser.parse_args(argv)
    findings = check(Path(args.root))
    for finding in findings:
        print(finding, file=sys.stderr)
    if findings:
        print(f"{len(findings)} secret problem(s) found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
