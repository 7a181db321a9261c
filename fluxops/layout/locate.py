"""Where a finding about a built object points: its source file and line, else its phase's."""

from __future__ import annotations

from typing import Any

from fluxops.layout.model import Cluster, Phase, meta
from fluxops.layout.sources import line_of
from fluxops.layout.tree import Tree


def where(
    tree: Tree, cluster: Cluster, phase: Phase | None, obj: dict[str, Any], *path: Any
) -> dict[str, Any]:
    """The cluster, phase, file and line a finding about ``obj`` (at key ``path``) points to."""
    src = tree.source_of(obj, cluster.name)
    found: dict[str, Any] = {"cluster": cluster.name, "phase": phase.name if phase else ""}
    if src is not None:
        found["file"] = src.file
        found["line"] = line_of(src.data, *path) or src.line
    elif phase is not None:
        found["file"], found["line"] = phase.file, phase.line
    return found


def label(obj: dict[str, Any]) -> str:
    """``Kind namespace/name`` of an object, as findings name it."""
    name, namespace = meta(obj)
    return f"{obj.get('kind', '?')} {namespace + '/' if namespace else ''}{name or '?'}"
