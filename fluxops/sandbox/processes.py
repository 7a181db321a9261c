"""Processes by PID: alive with the recorded start time, signalled, waited for, reaped."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against a reused PID), or None if gone."""
    if pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def alive(pid: int, start: str | None = None) -> bool:
    """Does ``pid`` run (and, given ``start``, is it still the process started then)?"""
    now = start_time(pid)
    return now is not None and (start is None or now == start)


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def namespace_pid(pid: int) -> int | None:
    """``pid``'s number in its innermost PID namespace (1 for a container's init)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def command_line(pid: int) -> list[str]:
    """The argv of ``pid`` (empty when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def send(pid: int, sig: int) -> None:
    """Signal ``pid``; a process already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is a child of this process (no zombie stays)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(processes: list[tuple[int, str]], timeout: float) -> list[tuple[int, str]]:
    """Wait until every (pid, start) has exited; return those still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = list(processes)
    while True:
        for pid, _ in left:
            reap(pid)
        left = [(pid, start) for pid, start in left if alive(pid, start)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)
