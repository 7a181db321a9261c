"""ruamel.yaml round trip for files fluxops edits: comments, key order and quoting survive."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError

from fluxops.errors import LayoutError
from fluxops.yamlstyle import round_trip


def load_docs(path: Path) -> list[Any]:
    """Every document of a YAML file, round-trip loaded (a redefined anchor is fine, as in kustomize).

    Raises LayoutError naming the file and line when the file cannot be edited: a key given twice
    (kustomize would use the last one; which one is meant is for a person to say) or invalid YAML.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReusedAnchorWarning)
            return list(round_trip().load_all(path.read_text(encoding="utf-8")))
    except YAMLError as exc:
        mark = (exc.problem_mark or exc.context_mark) if isinstance(exc, MarkedYAMLError) else None
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        if isinstance(exc, DuplicateKeyError):
            what = f"{exc.problem.split(' with value')[0]}; keep one of them before fluxops edits this file"
        else:
            what = f"not valid YAML ({getattr(exc, 'problem', None) or exc})"
        raise LayoutError(f"{where}: {what}") from None


def dump_docs(docs: list[Any]) -> str:
    """YAML text of round-trip documents."""
    out = io.StringIO()
    round_trip().dump_all(docs, out)
    return out.getvalue()


def write_docs(path: Path, docs: list[Any]) -> None:
    """Write round-trip documents to ``path`` (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_docs(docs), encoding="utf-8")


def leading_comments(text: str) -> str:
    """The comment block before an explicit first ``---`` (ruamel drops it), with the marker."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("---"):
            return "".join(lines[: i + 1]) if i else ""
        if stripped and not stripped.startswith("#"):
            return ""
    return ""


def dump_like(original: str, docs: list[Any]) -> str:
    """YAML text of edited documents, keeping the original's comment header before ``---``."""
    text = dump_docs(docs)
    head = leading_comments(original)
    if head and not text.startswith(head):
        text = head + text.removeprefix("---\n")
    return text
