"""The command the user runs fluxops' tasks with, for the hints messages give (``invoke`` or ``fluxops``)."""

from __future__ import annotations

_name = {"program": "invoke"}


def progname() -> str:
    """``fluxops`` under the console script, else ``invoke``: what a hint tells the user to type."""
    return _name["program"]


def set_progname(name: str) -> None:
    """Called once by the ``fluxops`` console script, so help, errors and hints name it."""
    _name["program"] = name


def command(line: str) -> str:
    """A task command line as the user types it: ``command("keys.generate -c lab")`` ->
    ``invoke keys.generate -c lab`` (or ``fluxops ...``)."""
    return f"{progname()} {line}"
