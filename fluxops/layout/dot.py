"""``layout.tree`` as Graphviz: a cluster's phases left to right in apply order, and rendering to PNG/SVG.

Edges run from the phase applied first to the phase that waits for it; the phases of one level share
a rank. A phase that does not wait (neither ``wait: true`` nor ``healthChecks``) has a dashed box and
dashed edges out of it, a phase that decrypts SOPS secrets is filled; a legend in the graph says so.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from fluxops.errors import LayoutError
from fluxops.layout.apply_order import (
    ApplyOrder,
    apply_order,
    blocks,
    installs,
    markers,
    missing_dependencies,
)
from fluxops.layout.apply_order import ordered as ordered
from fluxops.layout.model import Cluster, Phase
from fluxops.shell import local

FORMATS = ("png", "svg")
WRAP = 40  # characters per label line, so a node stays narrower than a level of nodes is tall
SOPS_FILL = "#fff2b3"
STUCK_COLOR = "#c0392b"
RENDER_TIMEOUT = 60.0


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _html(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _row(content: str, size: int = 10, color: str = "") -> str:
    font = f' point-size="{size}"' + (f' color="{color}"' if color else "")
    return f'<tr><td align="left"><font{font}>{content}</font></td></tr>'


def _label(phase: Phase, title: str, why: str | None) -> str:
    rows = [_row(f"<b>{_html(title)}</b>", 12)]
    if why is not None:
        rows += [_row(_html(part), 10, STUCK_COLOR) for part in textwrap.wrap(f"never applied: {why}", WRAP)]
    rows += [
        _row(_html(" · ".join(markers(phase))), 10, "#444444"),
        _row(_html(phase.path), 9, "#1f4e99"),
    ]
    for item in installs(phase) or ["(nothing)"]:
        for part in textwrap.wrap(item, WRAP, subsequent_indent="  ", break_on_hyphens=False):
            rows.append(_row(_html(part), 9))
    return '<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">' + "".join(rows) + "</table>>"


def _node(phase: Phase, title: str, why: str | None = None) -> str:
    style = ["rounded"] + ([] if blocks(phase) else ["dashed"])
    attrs = [f"label={_label(phase, title, why)}"]
    if "sops" in markers(phase):
        style.append("filled")
        attrs.append(f'fillcolor="{SOPS_FILL}"')
    if why is not None:
        attrs.append(f'color="{STUCK_COLOR}"')
    attrs.insert(0, f'style="{",".join(style)}"')
    return f"  {_quote(phase.name)} [{', '.join(attrs)}];"


LEGEND = [
    "subgraph cluster_legend {",
    '  label="legend"; labeljust=l; fontsize=10; style=rounded; color="#999999";',
    '  node [fontsize=9, height=0.3, margin="0.08,0.03", style=rounded];',
    '  "legend:wait" [label="wait, health: NAMES"];',
    '  "legend:wait-next" [label="next level: starts once\\lthe phase is healthy\\l"];',
    '  "legend:wait" -> "legend:wait-next";',
    '  "legend:nowait" [label="no wait", style="rounded,dashed"];',
    '  "legend:nowait-next" [label="next level: starts once\\lthe phase is applied\\l"];',
    '  "legend:nowait" -> "legend:nowait-next" [style=dashed];',
    f'  "legend:sops" [label="sops", style="rounded,filled", fillcolor="{SOPS_FILL}"];',
    '  "legend:sops-text" [shape=plaintext, label="the phase decrypts\\lSOPS-encrypted Secrets\\l"];',
    '  "legend:sops" -> "legend:sops-text" [style=invis];',
    "}",
]


def dot(cluster: Cluster) -> str:
    """The phase graph as a Graphviz digraph, left to right in apply order."""
    order: ApplyOrder = apply_order(cluster)
    title = f"cluster {cluster.name}: Flux phases in apply order, left to right (one column per level)"
    lines = [
        f"digraph {_quote('flux-' + cluster.name)} {{",
        f"  graph [rankdir=LR, label={_quote(title)}, labelloc=t, labeljust=l, fontsize=14,"
        ' fontname="Helvetica", nodesep=0.25, ranksep=0.6, newrank=true];',
        '  node [shape=box, fontname="Helvetica", margin="0.12,0.06"];',
        '  edge [color="#555555", arrowsize=0.8];',
    ]
    for number, level in enumerate(order.levels, 1):
        lines.extend(_node(p, f"{number} · {p.name}") for p in level)
        lines.append("  { rank=same; " + " ".join(f"{_quote(p.name)};" for p in level) + " }")
    lines.extend(_node(p, p.name, order.why[p.name]) for p in order.stuck)
    by_name = {p.name: p for p in cluster.phases}
    for phase in ordered(cluster):
        missing = missing_dependencies(cluster, phase)
        for dep in phase.depends_on:
            if dep in missing:
                lines.append(
                    f'  {_quote(dep)} [label={_quote(dep + " (missing)")}, color="{STUCK_COLOR}", '
                    f'fontcolor="{STUCK_COLOR}", fontsize=10, style="rounded,dashed"];'
                )
                lines.append(f'  {_quote(dep)} -> {_quote(phase.name)} [color="{STUCK_COLOR}"];')
            elif dep in by_name:
                dashed = "" if blocks(by_name[dep]) else " [style=dashed]"
                lines.append(f"  {_quote(dep)} -> {_quote(phase.name)}{dashed};")
    lines.extend(f"  {line}" for line in LEGEND)
    if len(order.levels) > 1:  # the legend sits under the last two levels, not before the first
        anchor = _quote(order.levels[-2][0].name)
        lines.append(f'  {{ rank=same; {anchor}; "legend:wait"; "legend:nowait"; "legend:sops"; }}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def per_cluster(target: Path, cluster: str, many: bool) -> Path:
    """Where a cluster's file goes: ``target`` itself, or with ``-CLUSTER`` before the suffix for many."""
    return target.with_name(f"{target.stem}-{cluster}{target.suffix}") if many else target


def check_target(fmt: str, target: Path) -> None:
    """Raise LayoutError when ``target`` cannot be written as ``fmt`` (dot, png, svg), before any work."""
    if fmt != "dot" and fmt not in FORMATS:
        raise LayoutError(f"cannot render {fmt!r}: the formats are dot, {', '.join(FORMATS)}")
    if not target.parent.is_dir():
        raise LayoutError(f"cannot write {target}: the folder {target.parent} does not exist")
    if fmt != "dot" and shutil.which("dot") is None:
        raise LayoutError(
            f"writing {target} needs Graphviz's `dot` command, which is not on PATH: install the "
            "graphviz package (apt-get install graphviz; scripts/setup.sh does it), "
            "or write the DOT source with --dot FILE"
        )


def render(source: str, fmt: str, target: Path) -> None:
    """Write DOT ``source`` to ``target`` as ``fmt`` (png or svg) with Graphviz's ``dot``."""
    check_target(fmt, target)
    local().run(["dot", f"-T{fmt}", "-o", str(target)], stdin=source, timeout=RENDER_TIMEOUT)


def write(cluster: Cluster, fmt: str, target: Path) -> None:
    """Write a cluster's graph to ``target``: the DOT source (``fmt`` "dot") or rendered (png, svg)."""
    check_target(fmt, target)
    source = dot(cluster)
    if fmt == "dot":
        target.write_text(source, encoding="utf-8")
    else:
        render(source, fmt, target)
