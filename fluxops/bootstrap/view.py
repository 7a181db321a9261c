"""What bootstrap, reconcile and status show: phase states live (rich on a terminal, a plain line per
change when piped), the final status table, the ``--check`` plan."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from fluxops import progress
from fluxops.bootstrap.phases import Observer, PhaseRun
from fluxops.bootstrap.plan import Plan
from fluxops.bootstrap.status import ClusterStatus

MARK = {"pending": "·", "reconciling": "…", "ready": "✔", "failed": "✗", "skipped": "-"}
MESSAGE_WIDTH = 100


def _seconds(run: PhaseRun) -> str:
    return f"{run.seconds:.1f}s" if run.seconds is not None else ""


def phase_line(cluster: str, run: PhaseRun) -> str:
    """One phase change as a line: mark, cluster, level, name, state, time, and why it failed."""
    extra = f" {_seconds(run)}" if run.seconds is not None else ""
    message = f": {run.message.splitlines()[0][:MESSAGE_WIDTH]}" if run.state in ("failed", "skipped") else ""
    return f"{MARK[run.state]} {cluster} level {run.level} {run.name} {run.state}{extra}{message}"


def _table(cluster: str, runs: dict[str, PhaseRun]) -> Table:
    table = Table(title=f"{cluster}: phases", title_justify="left")
    for column in ("level", "phase", "state", "time", "message"):
        table.add_column(column, overflow="fold")
    for run in sorted(runs.values(), key=lambda r: (r.level, r.name)):
        first = run.message.splitlines()[0][:MESSAGE_WIDTH] if run.message and run.state == "failed" else ""
        table.add_row(
            str(run.level), run.name, f"{MARK[run.state]} {run.state}", _seconds(run), escape(first)
        )
    return table


@contextmanager
def live(cluster: str) -> Iterator[Observer]:
    """An observer of phase changes: a live table on a terminal, else one line per change (stderr)."""
    runs: dict[str, PhaseRun] = {}
    lock = threading.Lock()
    if not progress.on_terminal():

        def plain(run: PhaseRun) -> None:
            if run.state != "pending":
                print(phase_line(cluster, run), file=sys.stderr, flush=True)

        yield plain
        return
    console = Console(stderr=True, highlight=False, no_color=progress.no_color())
    with Live(_table(cluster, runs), console=console, refresh_per_second=4, transient=True) as screen:

        def update(run: PhaseRun) -> None:
            with lock:
                runs[run.name] = run
                screen.update(_table(cluster, runs))

        yield update


def status_table(status: ClusterStatus) -> Table:
    """One cluster's phases: ready, revision, message, age."""
    title = f"{status.cluster} ({status.host})" + (f": {status.error}" if status.error else "")
    table = Table(title=escape(title), title_justify="left")
    for column in ("level", "phase", "ready", "revision", "age", "message"):
        table.add_column(column, overflow="fold")
    for row in status.kustomizations:
        revision = row.revision.split("@sha1:")
        short = f"{revision[0]}@{revision[1][:12]}" if len(revision) == 2 else row.revision
        ready = {"True": "✔ ready", "False": "✗ failed"}.get(row.ready, row.ready.lower())
        message = row.message.splitlines()[0][:MESSAGE_WIDTH] if row.message else ""
        if message == f"Applied revision: {row.revision}":
            message = "Applied revision"  # the revision has its own column
        level = "" if row.level is None else str(row.level)
        table.add_row(level, row.name, ready, short, row.age, escape(message))
    return table


def plan_lines(plan: Plan) -> list[str]:
    """``--check``'s plan as text."""
    lines = [f"bootstrap --check of {plan.cluster}: nothing was changed"]
    lines += [f"  {action:9} {what}" for what, action in plan.changes]
    levels = sorted({p.level for p in plan.phases})
    lines.append("  phases that would reconcile, level by level:")
    for level in levels:
        names = [
            p.name + ("" if p.blocks else " (nothing waits for it)") for p in plan.phases if p.level == level
        ]
        lines.append(f"    {level}: {' ∥ '.join(names)}")
    lines += [f"  note: {note}" for note in plan.notes]
    return lines
