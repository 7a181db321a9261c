"""``layout.tree`` as text: a cluster's phases drawn level by level with box-drawing glyphs.

Each level hangs off one spine in apply order; phases of one level branch off it together (they
are applied in parallel). A line is a list of (text, style) segments, so the same drawing prints as
plain text or, on a terminal, in colour through rich.
"""

from __future__ import annotations

from rich.text import Text

from fluxops.layout.apply_order import apply_order, installs, markers, missing_dependencies
from fluxops.layout.model import Cluster, Phase

Segment = tuple[str, str]  # (text, rich style; "" for none)
Line = list[Segment]

STUCK_BADGE = "✗"
LEGEND = (
    "wait: the next level starts once the phase's resources are healthy; "
    "no wait: once they are applied; sops: the phase decrypts SOPS-encrypted Secrets"
)
_STYLES = {"wait": "green", "no wait": "yellow", "sops": "magenta"}


def badge(level: int) -> str:
    """A level's number as a circled digit (①..⑳), or in parentheses above 20."""
    return chr(0x2460 + level - 1) if 1 <= level <= 20 else f"({level})"


def _flags(phase: Phase) -> Line:
    out: Line = []
    for i, flag in enumerate(markers(phase)):
        out += [(", ", "")] if i else []
        out.append((flag, _STYLES.get(flag, "")))
    return out


def _after(cluster: Cluster, phase: Phase, why: str | None, group: list[Phase]) -> Line:
    missing = set(missing_dependencies(cluster, phase))
    out: Line = []
    if phase.depends_on:
        out.append(("after ", "dim"))
        for i, dep in enumerate(phase.depends_on):
            out += [(", ", "dim")] if i else []
            out.append((f"{dep} (missing)", "bold red") if dep in missing else (dep, ""))
    if why is not None:
        out.append((f"  never applied: {why}", "bold red"))
    elif len(group) > 1:
        others = ", ".join(p.name for p in group if p is not phase)
        out.append((f"  (parallel with {others})", "cyan"))
    return out


def _pad(segments: Line, width: int) -> Line:
    return [*segments, (" " * (width - sum(len(t) for t, _ in segments)), "")]


def lines(cluster: Cluster) -> list[Line]:
    """The drawing, line by line, as styled segments."""
    order = apply_order(cluster)
    groups = [(badge(i), level) for i, level in enumerate(order.levels, 1)]
    groups += [(STUCK_BADGE, order.stuck)] if order.stuck else []
    phases = [p for _, group in groups for p in group]
    name_w = max((len(p.name) for p in phases), default=0)
    flag_w = max((len(", ".join(markers(p))) for p in phases), default=0)
    path_w = max((len(p.path) for p in phases), default=0)
    count = f"{len(phases)} phase{'s' if len(phases) != 1 else ''} on {len(order.levels)} level"
    out: list[Line] = [
        [
            (f"cluster {cluster.name}", "bold"),
            (f"  ({count}{'s' if len(order.levels) != 1 else ''}, apply order top to bottom)", "dim"),
        ]
    ]
    for g, (mark, group) in enumerate(groups):
        last_group = g == len(groups) - 1
        spine = " " if last_group else "│"
        for i, phase in enumerate(group):
            if i == 0:
                glyph = ("└─" if last_group else "├─") + ("┬ " if len(group) > 1 else "─ ")
            else:
                glyph = f"{spine} " + ("└ " if i == len(group) - 1 else "├ ")
            why = order.why.get(phase.name)
            out.append(
                [
                    (glyph, "dim"),
                    (f"{mark} ", "bold cyan" if why is None else "bold red"),
                    (phase.name.ljust(name_w + 2), "bold"),
                    *_pad(_flags(phase), flag_w + 2),
                    (phase.path.ljust(path_w + 2), "blue"),
                    *_after(cluster, phase, why, group),
                ]
            )
            inner = "│" if len(group) > 1 and i < len(group) - 1 else " "
            for item in installs(phase) or ["(nothing)"]:
                out.append([(f"{spine} {inner}     ", "dim"), (item, "")])
    return out


def _strip(line: Line) -> str:
    return "".join(text for text, _ in line).rstrip()


def text(cluster: Cluster) -> str:
    """The drawing as plain text."""
    return "\n".join(_strip(line) for line in lines(cluster))


def styled(cluster: Cluster) -> Text:
    """The drawing as rich Text, coloured for a terminal."""
    out = Text()
    for n, line in enumerate(lines(cluster)):
        out.append("\n" if n else "")
        for segment, style in line:
            out.append(segment, style=style or None)
        out.rstrip()
    return out
