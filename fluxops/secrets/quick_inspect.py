"""A faster look at the many files that cannot be encrypted, and where Helm templates live.

Only text with a sops hint gets :func:`fluxops.secrets.encrypted.inspect_text`'s full (slower) parse.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fluxops.layout.yaml_compat import YamlSyntaxError, load_all
from fluxops.secrets.encrypted import MAX_BYTES, Inspection, inspect, inspect_text
from fluxops.secrets.sops_values import is_sops_name

YAML_SUFFIXES = (".yaml", ".yml")


CHART_FILES = ("Chart.yaml", "Chart.yml")


_SOPS_HINT = re.compile(r'^sops:|"sops"\s*:|^sops_|^\[sops\]|ENC\[', re.MULTILINE)


_SECRET_HINTS = ("Secret", "secretGenerator")


def _fast_documents(text: str) -> list[Any] | None:
    """The documents as kustomize reads them (``=`` values, custom tags, redefined anchors), at
    libyaml speed; None when they do not parse, for the full inspection to say why."""
    try:
        return [doc for doc in load_all(text, resource=False) if doc is not None]
    except (YamlSyntaxError, RecursionError):
        return None


def quick_inspect(path: Path, *, syntax: bool = True) -> Inspection:
    """:func:`~fluxops.secrets.encrypted.inspect`, faster for the many files that cannot be encrypted.

    Only text with a sops hint (a ``sops:`` block, ``ENC[``, sops' dotenv/INI keys) or a
    ``*.sops.yaml`` name gets the full inspection. Other text is plaintext: parsed as kustomize reads it, to
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
    if syntax and path.suffix in YAML_SUFFIXES and _fast_documents(text) is None:
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
