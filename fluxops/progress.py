"""Progress of long work: a live line on a terminal, nothing when the output goes elsewhere.

``shown(label)`` yields a ``progress(done, total)`` callback, the shape library functions take
(``validate(..., progress=...)``, a rotation's step observer). On a terminal (stderr is a TTY and
``TERM`` is not ``dumb``) rich draws a spinner, a bar, ``done/total`` and the elapsed time on
stderr and removes it when the work ends; with ``NO_COLOR`` set (https://no-color.org) it is plain
text: no bar, no colour. Piped or redirected, the callback does nothing, so logs and ``--json``
output stay as they are.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Progress = Callable[[int, int], None]


def no_color() -> bool:
    """True when the user asked for output without colour (``NO_COLOR`` set and not empty)."""
    return bool(os.environ.get("NO_COLOR"))


def on_terminal() -> bool:
    """True when a live progress line can be drawn: stderr is a terminal that is not ``dumb``."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def _ignore(done: int, total: int) -> None:
    """The progress callback when nothing is shown."""


@contextmanager
def shown(label: str) -> Iterator[Progress]:
    """A ``progress(done, total)`` callback drawn as one live line on a terminal, for the ``with`` block."""
    if not on_terminal():
        yield _ignore
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Live

    plain = no_color()
    columns: list[ProgressColumn | str] = [TextColumn("{task.description}")]
    if not plain:
        columns = [SpinnerColumn(), *columns, BarColumn()]
    columns += [MofNCompleteColumn(), TimeElapsedColumn()]
    console = Console(stderr=True, highlight=False, no_color=plain, color_system=None if plain else "auto")
    # lines the work prints meanwhile go above the live line when stdout is this terminal too
    with Live(*columns, console=console, transient=True, redirect_stdout=sys.stdout.isatty()) as live:
        task = live.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            live.update(task, completed=done, total=total)

        yield update
