"""``layout.tree`` as text: a cluster's phases drawn level by level with box-drawing glyphs.

Each level hangs off one spine in apply order; phases of one level branch off it together (they
are applied in parallel). A line is a list of (text, style) segments, so the same drawing prints as
plain text or, on a terminal, in colour through rich.
"""

from __future__ import annotations

from rich.text import Text

from fluxops.layout.apply_order import (
    apply_order,
    components,
    installs,
    markers,
    missing_dependencies,
    ordered,
    top_level,
)
from fluxops.layout.model import Cluster, Phase

Segment = tuple[str, str]  # (text, rich style; "" for none)
Line = list[Segment]

STUCK_BADGE = "✗"
COMPONENT_BADGE = "·"  # a Kustomization a phase applies: drawn beneath it, levelled by its own dependsOn
LEGEND = (
    "wait: the next level starts once the phase's resources are healthy; "
    "health: NAMES: once those are healthy; no wait: once they are applied; "
    "sops: the phase decrypts SOPS-encrypted Secrets; ·: a Kustomization the phase above applies"
)
_STYLES = {"wait": "green", "no wait": "yellow", "sops": "magenta"}


def badge(level: int) -> str:
    """A level's number as a circled digit (①..⑳), or in parentheses above 20."""
    return chr(0x2460 + level - 1) if 1 <= level <= 20 else f"({level})"


def _flags(phase: Phase) -> Line:
    out: Line = []
    for i, flag in enumerate(markers(phase)):
        out += [(", ", "")] if i else []
        out.append((flag, _STYLES.get(flag, "green" if flag.startswith("health:") else "")))
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
        others = ", ".join(p.name for p in group if p.name != phase.name)
        out.append((f"  (parallel with {others})", "cyan"))
    return out


def _pad(segments: Line, width: int) -> Line:
    return [*segments, (" " * (width - sum(len(t) for t, _ in segments)), "")]


def _head(
    cluster: Cluster, glyph: str, mark: str, phase: Phase, why: str | None, group: list[Phase]
) -> tuple[list[Segment], Line, Line]:
    """A Kustomization's head line in three parts: glyphs, badge and name; markers; path and what
    it comes after (the first two are padded to the drawing's columns)."""
    left = [(glyph, "dim"), (f"{mark} ", "bold cyan" if why is None else "bold red"), (phase.name, "bold")]
    return left, _flags(phase), [(phase.path, "blue"), ("", ""), *_after(cluster, phase, why, group)]


def lines(cluster: Cluster) -> list[Line]:
    """The drawing, line by line, as styled segments: the phases level by level (levels from their
    dependsOn), each with what it installs and, beneath it, the Kustomizations it applies (its
    components, in their own apply order)."""
    shown = top_level(cluster)
    order = apply_order(shown)
    every = apply_order(cluster)  # a component's own order and, when Flux never applies it, why
    rank = {p.name: n for n, p in enumerate(ordered(cluster))}
    applies = components(cluster)
    by_name = {p.name: p for p in cluster.phases}
    groups = [(badge(i), level) for i, level in enumerate(order.levels, 1)]
    groups += [(STUCK_BADGE, order.stuck)] if order.stuck else []
    phases = [p for _, group in groups for p in group]
    parts: list[tuple[tuple[list[Segment], Line, Line] | None, Line]] = []  # (head, or a body line)

    def body(prefix: str, item: str) -> None:
        parts.append((None, [(prefix, "dim"), (item, "")]))

    def beneath(phase: Phase, prefix: str, seen: set[str]) -> None:
        """What ``phase`` installs, then its components, each line starting with ``prefix``."""
        found = sorted(
            (c for c in applies.get(phase.name, []) if c.name not in seen), key=lambda c: rank[c.name]
        )
        bar = "│" if found else " "
        for item in installs(phase, drawn=bool(found)) or ([] if found else ["(nothing)"]):
            body(f"{prefix}{bar}   ", item)
        for i, comp in enumerate(found):
            last = i == len(found) - 1
            why = every.why.get(comp.name)
            mark = COMPONENT_BADGE if why is None else STUCK_BADGE
            parts.append((_head(cluster, f"{prefix}{'└' if last else '├'} ", mark, comp, why, []), []))
            beneath(by_name[comp.name], f"{prefix}{' ' if last else '│'}   ", seen | {phase.name, comp.name})

    for g, (mark, group) in enumerate(groups):
        last_group = g == len(groups) - 1
        spine = " " if last_group else "│"
        for i, shown_phase in enumerate(group):
            phase = by_name[shown_phase.name]
            if i == 0:
                glyph = ("└─" if last_group else "├─") + ("┬ " if len(group) > 1 else "─ ")
            else:
                glyph = f"{spine} " + ("└ " if i == len(group) - 1 else "├ ")
            why = order.why.get(phase.name)
            parts.append((_head(cluster, glyph, mark, phase, why, group), []))
            inner = "│" if len(group) > 1 and i < len(group) - 1 else " "
            beneath(phase, f"{spine} {inner} ", {phase.name})

    heads = [head for head, _ in parts if head is not None]
    left_w = max((sum(len(t) for t, _ in left) for left, _, _ in heads), default=0)
    flag_w = max((sum(len(t) for t, _ in flags) for _, flags, _ in heads), default=0)
    path_w = max((len(rest[0][0]) for _, _, rest in heads), default=0)
    count = f"{len(phases)} phase{'s' if len(phases) != 1 else ''}"
    count += f", {len(heads) - len(phases)} component{'s' if len(heads) - len(phases) != 1 else ''}" * (
        len(heads) > len(phases)
    )
    levels = f"{len(order.levels)} level{'s' if len(order.levels) != 1 else ''}"
    out: list[Line] = [
        [(f"cluster {cluster.name}", "bold"), (f"  ({count} on {levels}, apply order top to bottom)", "dim")]
    ]
    for head, line in parts:
        if head is None:
            out.append(line)
            continue
        left, flags, (path, _, *after) = head
        out.append(
            [*_pad(left, left_w + 2), *_pad(flags, flag_w + 2), (path[0].ljust(path_w + 2), path[1]), *after]
        )
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
