"""Secrets in the tree: the file-level rules of :mod:`fluxops.secrets.check`, and decryption per phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fluxops.layout.findings import Findings, listing
from fluxops.layout.model import Cluster
from fluxops.layout.sources import Sources, line_of
from fluxops.secrets import check as secrets
from fluxops.secrets import sops_values
from fluxops.secrets.findings import Finding
from fluxops.secrets.rules import CONFIG_NAME


def is_sops_file(name: str) -> bool:
    """True for a file the tree's convention says must be SOPS-encrypted (``*.sops.yaml``)."""
    return sops_values.is_sops_name(name)


def is_encrypted(obj: dict[str, Any]) -> bool:
    """True when an object carries SOPS metadata (Flux decrypts it at apply time)."""
    return isinstance(obj.get("sops"), dict)


def plaintext_secret(obj: Any) -> bool:
    """True for a Secret with values (ones sops would encrypt) and no SOPS metadata."""
    return sops_values.plaintext_secret(obj)


def _line(sources: Sources, finding: Finding) -> int:
    if finding.line:
        return finding.line
    docs = sources.docs.get(finding.path) or []
    if finding.document < len(docs):
        doc = docs[finding.document]
        return line_of(doc.data, *finding.keys) or doc.line
    return 1


def check_files(
    root: Path,
    sources: Sources,
    findings: Findings,
    only: tuple[str, ...] = (),
    key_dir: Path | None = None,
) -> None:
    """The secret checker's findings for the repository's files (``only`` these folders, and
    .sops.yaml; every file git would commit when ``only`` is empty).

    Loading parses every file and reports YAML errors (code ``yaml``), so the checker does not
    parse files for syntax alone, and its YAML findings are kept only for files loading did not
    report. Without ``key_dir`` only an environment key verifies MACs.
    """
    within = (*only, CONFIG_NAME) if only else ()
    for finding in secrets.check(root, key_dir, within=within, syntax=False):
        if finding.code == "yaml" and finding.path in sources.errors:
            continue
        findings.error(finding.code, finding.reason, file=finding.path, line=_line(sources, finding))


def check_decryption(cluster: Cluster, findings: Findings) -> None:
    """A phase whose build holds encrypted objects must decrypt with sops."""
    for phase in cluster.phases:
        encrypted = [o for o in phase.objects if is_encrypted(o)]
        if not encrypted:
            continue
        decryption = phase.decryption
        if decryption.get("provider") != "sops":
            names = listing(sorted({str((o.get("metadata") or {}).get("name", "?")) for o in encrypted}))
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
