"""Secrets in the tree: *.sops.yaml really encrypted, no plaintext Secret, decryption where needed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fluxops.layout.findings import Findings
from fluxops.layout.model import Cluster
from fluxops.layout.sources import SourceDoc, Sources, line_of

SOPS_SUFFIXES = (".sops.yaml", ".sops.yml")
ENC = "ENC["
SECRET_KEYS = ("data", "stringData")


def is_sops_file(name: str) -> bool:
    """True for a file the tree's convention says must be SOPS-encrypted."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(SOPS_SUFFIXES) and base not in SOPS_SUFFIXES


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path, value


def encryption_problem(doc: Any) -> tuple[str, tuple[Any, ...]] | None:
    """Why a document is not a SOPS-encrypted document (and the key path), or None if it is."""
    if not isinstance(doc, dict):
        return "not a mapping", ()
    meta = doc.get("sops")
    if not isinstance(meta, dict):
        return "no sops metadata: the file is plaintext; encrypt it with `sops -e -i FILE`", ()
    if not str(meta.get("mac", "")).startswith(ENC):
        return "sops metadata has no encrypted mac (the file was edited without sops?)", ("sops",)
    if not any(meta.get(k) for k in ("age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "key_groups")):
        return "sops metadata names no recipient key", ("sops",)
    body = {k: v for k, v in doc.items() if k != "sops"}
    values = [(p, v) for p, v in _leaves(body) if isinstance(v, str)]
    if not any(v.startswith(ENC) for _, v in values):
        return "no ENC[...] value: nothing in the file is encrypted", ()
    for key in SECRET_KEYS:
        section = doc.get(key)
        if isinstance(section, dict):
            for path, value in _leaves(section, (key,)):
                if not (isinstance(value, str) and value.startswith(ENC)):
                    return f"{'.'.join(map(str, path))} is not encrypted", path
    return None


def is_encrypted(obj: dict[str, Any]) -> bool:
    """True when an object carries SOPS metadata (Flux decrypts it at apply time)."""
    return isinstance(obj.get("sops"), dict)


def plaintext_secret(obj: Any) -> bool:
    """True for a Secret with values and no SOPS metadata."""
    if not isinstance(obj, dict) or obj.get("kind") != "Secret" or is_encrypted(obj):
        return False
    return any(obj.get(k) for k in SECRET_KEYS)


def check_sources(sources: Sources, findings: Findings, only: tuple[str, ...] = ()) -> None:
    """Every *.sops.yaml encrypted; no plaintext Secret or secretGenerator in any file."""
    for file, docs in sources.docs.items():
        if only and not file.startswith(only):
            continue
        if is_sops_file(file):
            if not docs:
                findings.error("sops-unencrypted", "empty *.sops.yaml file", file=file, line=1)
            for doc in docs:
                problem = encryption_problem(doc.data)
                if problem is not None:
                    message, path = problem
                    findings.error(
                        "sops-unencrypted",
                        f"named *.sops.yaml but not SOPS-encrypted: {message}",
                        file=file,
                        line=line_of(doc.data, *path) or doc.line,
                    )
            continue
        for doc in docs:
            _check_plain_doc(doc, findings)


def _check_plain_doc(doc: SourceDoc, findings: Findings) -> None:
    data = doc.data
    if plaintext_secret(data):
        findings.error(
            "plaintext-secret",
            f"plaintext Secret {doc.name or '?'}: secrets live in *.sops.yaml files, encrypted with sops",
            file=doc.file,
            line=doc.line,
        )
    if isinstance(data, dict) and data.get("kind") == "Kustomization" and data.get("secretGenerator"):
        findings.error(
            "plaintext-secret",
            "secretGenerator makes a plaintext Secret from files in git; use a *.sops.yaml Secret",
            file=doc.file,
            line=line_of(data, "secretGenerator") or doc.line,
        )


def check_decryption(cluster: Cluster, findings: Findings) -> None:
    """A phase whose build holds encrypted objects must decrypt with sops."""
    for phase in cluster.phases:
        encrypted = [o for o in phase.objects if is_encrypted(o)]
        if not encrypted:
            continue
        decryption = phase.decryption
        if decryption.get("provider") != "sops":
            names = ", ".join(sorted({str((o.get("metadata") or {}).get("name", "?")) for o in encrypted}))
            findings.error(
                "decryption-missing",
                f"Kustomization {phase.name} applies SOPS-encrypted objects ({names}) but has no "
                "spec.decryption {provider: sops, secretRef: {name: sops-age}}",
                cluster=cluster.name,
                **phase.where,
            )
        elif not (decryption.get("secretRef") or {}).get("name"):
            findings.warning(
                "decryption-secret",
                f"Kustomization {phase.name} decrypts with sops but names no secretRef (sops-age)",
                cluster=cluster.name,
                **phase.where,
            )


def check_creation_rules(sources: Sources, config_file: str, findings: Findings) -> None:
    """Each *.sops.yaml is matched by a creation rule of .sops.yaml (else `sops` cannot re-encrypt it)."""
    docs = sources.docs.get(config_file)
    if not docs:
        return
    rules = docs[0].data.get("creation_rules") if isinstance(docs[0].data, dict) else None
    patterns = []
    for rule in rules or []:
        if isinstance(rule, dict) and isinstance(rule.get("path_regex"), str):
            try:
                patterns.append(re.compile(rule["path_regex"]))
            except re.error as exc:
                findings.error("sops-config", f"bad path_regex: {exc}", file=config_file, line=rule.line)
        elif isinstance(rule, dict):
            patterns.append(re.compile(""))
    for file in sources.docs:
        if is_sops_file(file) and not any(p.search(file) for p in patterns):
            findings.warning(
                "sops-config",
                f"no creation rule in {config_file} matches {file}",
                file=file,
                line=1,
            )
