"""kubectl's output: tables by kind, ``-o name``, ``-o json|yaml`` and the ``-o jsonpath`` subset used.

JSONPath: ``{.a.b}``, ``{.a[0]}``, ``{.a[*].b}``, filters ``[?(@.type=="Ready")]``, string literals
(``{"\\n"}``) and literal text between expressions; several results are joined by spaces, as kubectl
prints them. Anything else (``range``, recursive descent, functions) is refused as unsupported by the
simulator.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from fluxops.sim import conditions as cond
from fluxops.sim.cli_common import human_age
from fluxops.sim.clock import parse_rfc3339
from fluxops.sim.kinds import Kind

_TOKEN = re.compile(
    r'\.([A-Za-z0-9_\-/]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*["\']([^"\']*)["\']\)\]'
)


class JsonPathError(Exception):
    """A template outside the supported subset."""


def name_of(kind: Kind, obj: dict[str, Any]) -> str:
    """``-o name``: ``kind.group/name`` (``kind/name`` for the core group)."""
    return f"{kind.singular}{'.' + kind.group if kind.group else ''}/{obj['metadata']['name']}"


def as_document(objects: list[dict[str, Any]], single: bool) -> dict[str, Any]:
    """One object, or kubectl's ``List``."""
    if single:
        return objects[0]
    return {"apiVersion": "v1", "items": objects, "kind": "List", "metadata": {"resourceVersion": ""}}


def dump(document: dict[str, Any], fmt: str) -> str:
    """``-o json`` (4-space indent, as kubectl) or ``-o yaml``."""
    if fmt == "json":
        return json.dumps(document, indent=4) + "\n"
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False)


def _walk(value: Any, expr: str) -> list[Any]:
    pos, current = 0, [value]
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise JsonPathError(f"jsonpath expression {expr!r} is not in the simulated subset")
        key, index, field, wanted = match.groups()
        found: list[Any] = []
        for item in current:
            if key is not None and isinstance(item, dict) and key in item:
                found.append(item[key])
            elif index == "*" and isinstance(item, list):
                found.extend(item)
            elif index is not None and index != "*" and isinstance(item, list) and int(index) < len(item):
                found.append(item[int(index)])
            elif field is not None and isinstance(item, list):
                found.extend(e for e in item if isinstance(e, dict) and str(_get(e, field)) == wanted)
        current = found
        pos = match.end()
    return current


def _get(item: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        item = item.get(part) if isinstance(item, dict) else None
    return item


def jsonpath(document: Any, template: str) -> str:
    """Evaluate a kubectl JSONPath template (the subset above)."""
    out, pos = [], 0
    for match in re.finditer(r"\{([^{}]*)\}", template):
        out.append(template[pos : match.start()])
        expr = match.group(1).strip()
        if len(expr) >= 2 and expr[0] == expr[-1] and expr[0] in "\"'":  # a string literal: {"\n"}
            out.append(expr[1:-1].encode().decode("unicode_escape"))
            pos = match.end()
            continue
        if not expr.startswith(".") or expr.startswith(("..", "range", "end")):
            raise JsonPathError(f"jsonpath {{{expr}}} is not in the simulated subset")
        values = _walk(document, "" if expr == "." else expr)
        out.append(" ".join(v if isinstance(v, str) else json.dumps(v) for v in values))
        pos = match.end()
    out.append(template[pos:])
    return "".join(out)


def _ready_columns(obj: dict[str, Any]) -> list[str]:
    status, _, message = cond.ready_reason(obj)
    return [status if cond.get(obj.get("status") or {}, cond.READY) else "", message]


def table(
    kind: Kind, objects: list[dict[str, Any]], now: float, all_namespaces: bool, headers: bool = True
) -> str:
    """kubectl's table for ``kind``."""

    def age(obj: dict[str, Any]) -> str:
        created = parse_rfc3339(str(obj["metadata"].get("creationTimestamp", "")))
        return human_age(now - created) if created else "<unknown>"

    head: list[str]
    rows: list[list[str]] = []
    if kind.kind == "Node" and not kind.group:
        head = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        for obj in objects:
            labels = obj["metadata"].get("labels") or {}
            roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
            ready = "Ready" if cond.is_true(obj) else "NotReady"
            version = ((obj.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
            rows.append([obj["metadata"]["name"], ready, ",".join(roles) or "<none>", age(obj), version])
    elif kind.kind == "Namespace" and not kind.group:
        head = ["NAME", "STATUS", "AGE"]
        rows = [
            [o["metadata"]["name"], (o.get("status") or {}).get("phase", "Active"), age(o)] for o in objects
        ]
    elif kind.kind == "Secret" and not kind.group:
        head = ["NAME", "TYPE", "DATA", "AGE"]
        rows = [
            [o["metadata"]["name"], o.get("type", "Opaque"), str(len(o.get("data") or {})), age(o)]
            for o in objects
        ]
    elif kind.kind == "ConfigMap" and not kind.group:
        head = ["NAME", "DATA", "AGE"]
        rows = [[o["metadata"]["name"], str(len(o.get("data") or {})), age(o)] for o in objects]
    elif kind.kind == "CustomResourceDefinition":
        head = ["NAME", "CREATED AT"]
        rows = [[o["metadata"]["name"], str(o["metadata"].get("creationTimestamp", ""))] for o in objects]
    elif kind.group.endswith(".toolkit.fluxcd.io"):
        url = kind.kind in ("GitRepository", "HelmRepository", "OCIRepository")
        head = ["NAME", *(["URL"] if url else []), "AGE", "READY", "STATUS"]
        for obj in objects:
            extra = [str((obj.get("spec") or {}).get("url", ""))] if url else []
            rows.append([obj["metadata"]["name"], *extra, age(obj), *_ready_columns(obj)])
    else:
        head = ["NAME", "AGE"]
        rows = [[o["metadata"]["name"], age(o)] for o in objects]
    if all_namespaces and kind.namespaced:
        head = ["NAMESPACE", *head]
        rows = [[o["metadata"].get("namespace", ""), *row] for o, row in zip(objects, rows, strict=True)]
    lines = [head, *rows] if headers else rows
    return columns(lines, gap=3)


def columns(lines: list[list[str]], gap: int = 3) -> str:
    """Left-aligned columns (kubectl's tabwriter: three spaces between columns)."""
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        out.append((" " * gap).join(cells).rstrip())
    return "\n".join(out) + "\n"
