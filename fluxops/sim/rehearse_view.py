"""How a rehearsal is shown: a timeline as it happens, a final table, or one JSON document.

The timeline prints a line when a phase (Kustomization) starts, waits, applies, becomes Ready or
fails, once per change: a retry that ends as the previous attempt did prints nothing. Phases that
start at the same simulated moment, as Flux runs them (in parallel), share one line. On a terminal
the lines are coloured and a live panel shows every phase's state; piped, the lines are plain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fluxops.sim.rehearse import Phase, Rehearsal
from fluxops.sim.results import Event

ICONS = {"started": "▶", "waiting": "…", "applied": "⧗", "ready": "✔", "failed": "✖"}
STYLES = {"started": "cyan", "waiting": "yellow", "applied": "blue", "ready": "green", "failed": "red"}
HELM_REASONS = ("ValuesError", "InstallFailed", "UpgradeFailed", "ArtifactFailed")
CHARTS_NOTE = "HelmReleases are checked for their chart source and values; charts are not rendered"


def seconds(value: float | None) -> str:
    """A simulated time offset: ``90s``, ``12m30s``, ``-`` when unknown."""
    if value is None:
        return "-"
    minutes, secs = divmod(round(value), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def first_line(text: str) -> str:
    """The first line of a message (Flux appends the change log to apply errors)."""
    return text.strip().splitlines()[0] if text.strip() else ""


def summary(message: str) -> str:
    """A long ``waiting for Kind/ns/name, ...`` message as counts by kind."""
    text = first_line(message)
    if not text.startswith("waiting for ") or len(text) <= 90:
        return text
    counts: dict[str, int] = {}
    for label in text.removeprefix("waiting for ").split(", "):
        kind = label.split("/", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return "waiting for " + ", ".join(f"{kind} ×{n}" if n > 1 else kind for kind, n in counts.items())


class Timeline:
    """Turns the events of each round of the controllers into timeline lines; ``emit(text, style)``
    prints one."""

    def __init__(self, emit: Callable[[str, str], None], width: int = 22) -> None:
        self.emit = emit
        self.width = width
        self.last: dict[tuple[str, str, str], tuple[str, str, str]] = {}
        self.states: dict[str, str] = {}  # phase -> what it last did (the live panel)

    def __call__(self, events: list[Event]) -> None:
        started: dict[str, Event] = {}
        lines: list[tuple[str, Event]] = []
        for event in events:
            key = (event.kind, event.namespace, event.name)
            outcome = (event.what, event.reason, first_line(event.message))
            if event.kind == "Kustomization":
                if event.what == "started":
                    started[event.name] = event
                    continue
                if self.last.get(key) == outcome:
                    started.pop(event.name, None)
                    continue
                self.last[key] = outcome
                self.states[event.name] = event.what
                lines.append((event.name, event))
            elif (
                event.kind == "HelmRelease"
                and self.last.get(key) != outcome
                and (
                    (event.what == "failed" and event.reason in HELM_REASONS)
                    or (event.what == "ready" and key in self.last)
                )
            ):
                self.last[key] = outcome
                lines.append((f"HelmRelease/{event.name}", event))
        shown = [n for n in started if any(n == name for name, _ in lines)]
        if len(shown) > 1:
            self.emit(f"{seconds(started[shown[0]].time):>7}  ▶ {' ∥ '.join(shown)}  (in parallel)", "cyan")
        for name, event in lines:
            if len(shown) == 1 and name == shown[0]:
                self.emit(f"{seconds(event.time):>7}  {name:<{self.width}} ▶ started", "cyan")
            text = summary(event.message)
            if event.what == "failed":
                text = f"{event.reason}{' at ' + event.stage if event.stage else ''}: {text}"
            icon = ICONS.get(event.what, "-")
            self.emit(
                f"{seconds(event.time):>7}  {name:<{self.width}} {icon} {text}", STYLES.get(event.what, "")
            )


def header(result: Rehearsal) -> list[str]:
    """What is rehearsed, from where, with which key."""
    snap = result.snapshot
    short = snap.commit[:12]
    base = f"HEAD {snap.head[:12]}" if snap.head else "no commit yet"
    extra = ""
    if snap.changed and snap.head:
        listed = ", ".join(snap.changed[:3]) + (", ..." if len(snap.changed) > 3 else "")
        extra = f" + {len(snap.changed)} uncommitted file(s), included ({listed})"
    elif not snap.head:
        extra = f" ({len(snap.changed)} files, not a git repository: all included)"
    return [
        f"rehearsal of cluster {result.cluster} on a simulated k3s {result.kubernetes} node "
        f"with Flux {result.flux}",
        f"  source  GitRepository {result.url} is served from this working tree: "
        f"{snap.branch}@sha1:{short} = {base}{extra}",
        f"  key     {result.key or 'none (--no-key): the sops-age Secret is not created'}",
        f"  charts  {CHARTS_NOTE}",
    ]


def parallel_with(phase: Phase, phases: list[Phase]) -> list[str]:
    """Other phases that first started in the same round of the controllers (Flux ran them in parallel)."""
    if phase.tick is None:
        return []
    return [p.name for p in phases if p is not phase and p.tick == phase.tick]


HEADINGS = ["phase", "blocks", "started", "ready", "result", "in parallel with"]


def rows(result: Rehearsal) -> list[list[str]]:
    """The final table: phase, whether it blocks, started, ready, result, in parallel with."""
    table = []
    for phase in result.phases:
        if phase.ready:
            outcome = "Ready"
        elif phase.stage:
            outcome = f"{phase.reason} at {phase.stage}"
        else:
            outcome = phase.reason or "not reconciled"
        blocks = "yes" if phase.blocks else "no"
        parallel = ", ".join(parallel_with(phase, result.phases))
        table.append([phase.name, blocks, seconds(phase.started), seconds(phase.ready_at), outcome, parallel])
    return table


def verdict(result: Rehearsal) -> list[str]:
    """The closing lines: failed phases with their messages, HelmReleases, and the result."""
    lines = []
    for phase in result.phases:
        if not phase.ready:
            tag = "blocks" if phase.blocks else "nothing waits for it"
            lines.append(f"{phase.name} ({tag}): {phase.reason}: {phase.message.strip()}")
    ready = [r for r in result.releases if r.ready]
    lines.append(f"HelmReleases: {len(ready)} of {len(result.releases)} Ready ({CHARTS_NOTE})")
    for release in result.releases:
        if not release.ready:
            lines.append(f"  {release.namespace}/{release.name}: {release.reason}: {release.message}")
    took = f"{seconds(result.end - result.start)} of simulated time, {result.seconds:.1f} s"
    if result.ok:
        soft = [p.name for p in result.phases if not p.ready]
        note = f"; {', '.join(soft)} failed, reported only (nothing waits for it)" if soft else ""
        lines.append(f"rehearsal passed: every blocking phase is Ready ({took}){note}")
    else:
        names = ", ".join(p.name for p in result.failed_blocking)
        lines.append(f"rehearsal failed: {names} did not become Ready ({took})")
    return lines


def as_json(result: Rehearsal) -> dict[str, Any]:
    """The ``--json`` document."""
    snap = result.snapshot
    return {
        "cluster": result.cluster,
        "ok": result.ok,
        "source": {
            "url": result.url,
            "revision": snap.revision,
            "head": snap.head,
            "uncommitted": snap.changed,
        },
        "key": result.key or None,
        "charts_rendered": False,
        "simulated_seconds": result.end - result.start,
        "seconds": round(result.seconds, 3),
        "phases": [asdict(p) for p in result.phases],
        "releases": [asdict(r) for r in result.releases],
        "events": [asdict(e) for e in result.events],
    }
