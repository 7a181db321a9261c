"""Showing a run as Ansible does: a line per task per host while it runs, diffs, the PLAY RECAP.

Lines are written as results arrive, from every host thread, one whole line (with its diff or
error) at a time. Every text here was masked by the executor.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from fluxops.runner.playbook import Play
from fluxops.runner.results import Report, Status, TaskResult

RULE_WIDTH = 80
RECAP_COUNTS = ("ok", "changed", "unreachable", "failed", "skipped")
_WORDS = {
    Status.OK: ("ok", "green"),
    Status.CHANGED: ("changed", "yellow"),
    Status.SKIPPED: ("skipping", "cyan"),
    Status.FAILED: ("fatal", "red"),
    Status.UNREACHABLE: ("fatal", "red"),
}
_DIFF_COLORS = {"+": "green", "-": "red", "@": "cyan"}


def _banner(title: str) -> str:
    return f"{title} " + "*" * max(3, RULE_WIDTH - len(title) - 1)


def task_line(result: TaskResult) -> str:
    """The line Ansible would print for ``result`` (plain text)."""
    word, _ = _WORDS[result.status]
    kind = "RUNNING HANDLER" if result.handler else "TASK"
    text = f"{word}: [{result.host}] {kind} [{result.task}]"
    if result.item is not None:
        text += f" => (item={result.item})"
    if result.status in (Status.FAILED, Status.UNREACHABLE):
        verdict = "UNREACHABLE!" if result.status is Status.UNREACHABLE else "FAILED!"
        text += f": {verdict} {result.error}"
    elif result.summary:
        text += f": {result.summary}"
    return text


def failure_details(result: TaskResult) -> list[str]:
    """What a failure adds below its line: where, the command, its exit code and stderr tail."""
    lines = [f"    at {result.location}"] if result.location else []
    if result.command:
        lines.append(f"    command: {result.command}")
    if result.rc is not None:
        lines.append(f"    rc: {result.rc}")
    if result.stderr:
        lines.append("    stderr:")
        lines.extend(f"      {line}" for line in result.stderr.splitlines())
    return lines


def recap_lines(report: Report) -> list[str]:
    """The PLAY RECAP block, one line per host, as Ansible formats it."""
    lines = [_banner("PLAY RECAP")]
    for host, stats in report.stats.items():
        counts = " ".join(f"{name}={getattr(stats, name):<4}" for name in RECAP_COUNTS)
        lines.append(f"{host:<26} : {counts}".rstrip())
    return lines


class TextReporter:
    """Live progress on a rich Console (colours on a terminal, plain text elsewhere)."""

    def __init__(self, console: Console, *, check: bool = False) -> None:
        self.console = console
        self.check = check
        self._lock = threading.Lock()

    def play_started(self, play: Play, hosts: Sequence[str]) -> None:
        """``PLAY [name]`` and the hosts it runs on."""
        mode = " (check mode: nothing is changed)" if self.check else ""
        on = ", ".join(hosts) if hosts else "no hosts match"
        with self._lock:
            self.console.print()
            self._line(_banner(f"PLAY [{play.name}]"), "bold")
            self._line(f"hosts: {on}{mode}")

    def task_done(self, result: TaskResult) -> None:
        """One line, and the diff or failure details below it."""
        _, colour = _WORDS[result.status]
        with self._lock:
            self._line(task_line(result), colour)
            for line in result.diff.splitlines():
                self._line(line, _diff_style(line))
            if result.status in (Status.FAILED, Status.UNREACHABLE):
                for line in failure_details(result):
                    self._line(line, colour)

    def recap(self, report: Report) -> None:
        """The PLAY RECAP, coloured by each host's worst outcome."""
        lines = recap_lines(report)
        with self._lock:
            self.console.print()
            self._line(lines[0], "bold")
            for line, stats in zip(lines[1:], report.stats.values(), strict=True):
                colour = "yellow" if stats.changed else "green"
                self._line(line, "red" if stats.failed or stats.unreachable else colour)

    def _line(self, text: str, style: str | None = None) -> None:
        """One line as it is (no markup, no wrapping), called with the lock held."""
        self.console.print(escape(text), style=style, soft_wrap=True)


def _diff_style(line: str) -> str | None:
    if line.startswith(("---", "+++")):
        return "bold"
    return _DIFF_COLORS.get(line[:1])


def as_json(report: Report) -> str:
    """The report as a JSON document (``--json``)."""
    return json.dumps(report.as_dict(), indent=2, sort_keys=False)
