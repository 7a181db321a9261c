"""``rehearse`` for a person or a program: the cluster's key, the live timeline or JSON, the verdict."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fluxops.errors import FluxopsError, KeyStoreError
from fluxops.layout.model import Repo
from fluxops.masking import Secret
from fluxops.secrets import keys
from fluxops.sim import rehearse_view as view
from fluxops.sim.rehearse import Rehearsal, identities_of, rehearse
from fluxops.sim.results import Event


def cluster_key(key_dir: Path, cluster: str, root: Path) -> tuple[Secret, str]:
    """The identities the node gets and how the output names them (never the key itself)."""
    try:
        source = keys.decryption_key(Path(key_dir).expanduser(), cluster, root)
    except KeyStoreError as exc:
        raise FluxopsError(f"{exc}; or rehearse with --no-key to see what Flux does without it") from None
    return identities_of(source), f"sops-age Secret (flux-system) from {source.key_file}"


def run(root: Path, cluster: str, key_dir: Path, *, no_key: bool = False, as_json: bool = False) -> bool:
    """Rehearse and print; True when every wait:true phase became Ready."""
    identities, label = (None, "") if no_key else cluster_key(key_dir, cluster, root)
    cache = Repo(Path(root).resolve()).cache_dir
    if as_json:
        result = rehearse(root, cluster, identities=identities, key_label=label, cache_dir=cache)
        print(json.dumps(view.as_json(result), indent=2, default=str))
        return result.ok
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return _live(root, cluster, identities, label, cache)
    return _plain(root, cluster, identities, label, cache)


def _plain(root: Path, cluster: str, identities: Secret | None, label: str, cache: Path) -> bool:
    def emit(text: str, style: str = "") -> None:
        print(text, flush=True)

    timeline = view.Timeline(emit)

    def start(result: Rehearsal) -> None:
        for line in view.header(result):
            emit(line)
        emit("")

    result = rehearse(root, cluster, identities=identities, key_label=label, cache_dir=cache,
                      on_start=start, on_events=timeline)  # fmt: skip
    emit("")
    table = [view.HEADINGS, *view.rows(result)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        emit("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    emit("")
    for line in view.verdict(result):
        emit(line)
    return result.ok


def _live(root: Path, cluster: str, identities: Secret | None, label: str, cache: Path) -> bool:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console(highlight=False)
    phases: dict[str, str] = {}

    def panel() -> Table:
        table = Table(show_header=False, box=None, padding=(0, 1))
        for name, what in phases.items():
            table.add_row(view.ICONS.get(what, "·"), name, what, style=view.STYLES.get(what, "dim"))
        return table

    with Live(panel(), console=console, transient=True, refresh_per_second=8) as live:

        def emit(text: str, style: str = "") -> None:
            live.console.print(text, style=style or None)

        timeline = view.Timeline(emit)

        def events(batch: list[Event]) -> None:
            timeline(batch)
            phases.update(timeline.states)
            live.update(panel())

        def start(result: Rehearsal) -> None:
            emit(view.header(result)[0], "bold")
            for line in view.header(result)[1:]:
                emit(line, "dim")

        result = rehearse(root, cluster, identities=identities, key_label=label, cache_dir=cache,
                          on_start=start, on_events=events)  # fmt: skip
    table = Table(title=None)
    for column in view.HEADINGS:
        table.add_column(column)
    for phase, row in zip(result.phases, view.rows(result), strict=True):
        table.add_row(*row, style="green" if phase.ready else ("red" if phase.blocks else "yellow"))
    console.print(table)
    lines = view.verdict(result)
    for line in lines[:-1]:
        console.print(line)
    console.print(lines[-1], style="bold green" if result.ok else "bold red")
    return result.ok
