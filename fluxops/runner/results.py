"""What a run reports: one result per task (or loop item) per host, and each host's counts."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A task's outcome on one host, in Ansible's words."""

    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class TaskResult:
    """One task (or one loop item) on one host; every text already masked."""

    host: str
    play: str
    task: str
    status: Status
    item: str | None = None
    summary: str = ""
    diff: str = ""
    error: str = ""
    command: str = ""
    rc: int | None = None
    stderr: str = ""
    handler: bool = False
    location: str = ""  # playbook file:line of the task

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        data = asdict(self)
        data["status"] = self.status.value
        return {k: v for k, v in data.items() if v not in ("", None, False) or k in ("status", "rc")}


@dataclass
class HostStats:
    """Ansible's recap counts for one host: ``ok`` counts changed tasks too, as in Ansible."""

    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0

    def count(self, status: Status) -> None:
        """Count one task's outcome."""
        if status in (Status.OK, Status.CHANGED):
            self.ok += 1
        if status is not Status.OK:
            setattr(self, status.value, getattr(self, status.value) + 1)


@dataclass
class Report:
    """Every result of a run and the recap; safe to add to from several host threads."""

    check: bool = False
    results: list[TaskResult] = field(default_factory=list)
    stats: dict[str, HostStats] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, result: TaskResult) -> None:
        """Record one result (loop items are counted once per task by ``count``)."""
        with self._lock:
            self.results.append(result)
            self.stats.setdefault(result.host, HostStats())

    def count(self, host: str, status: Status) -> None:
        """Count one task's overall outcome on ``host``."""
        with self._lock:
            self.stats.setdefault(host, HostStats()).count(status)

    def hosts(self, names: Iterable[str]) -> None:
        """Make sure every host of a play shows in the recap, even with nothing to do."""
        with self._lock:
            for name in names:
                self.stats.setdefault(name, HostStats())

    @property
    def failed_hosts(self) -> list[str]:
        """Hosts where a task failed or that could not be reached."""
        return [h for h, s in self.stats.items() if s.failed or s.unreachable]

    @property
    def changed(self) -> int:
        """Changed tasks over all hosts."""
        return sum(s.changed for s in self.stats.values())

    def failures(self) -> list[TaskResult]:
        """The failed results, host by host."""
        return [r for r in self.results if r.status in (Status.FAILED, Status.UNREACHABLE)]

    def as_dict(self) -> dict[str, Any]:
        """The whole report as plain data (for ``--json``)."""
        return {
            "check": self.check,
            "results": [r.as_dict() for r in self.results],
            "recap": {h: asdict(s) for h, s in self.stats.items()},
            "failed_hosts": self.failed_hosts,
            "changed": self.changed,
        }
