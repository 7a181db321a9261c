"""Simulated time: Go-style durations as Flux writes them, and clocks whose waits run faster.

Flux's intervals (``interval``, ``retryInterval``, ``timeout``, kustomize-controller's 30 s
``--requeue-dependency``, the 5 s health-check poll) are minutes long. A time factor makes the
simulator honour them without waiting for them: with a factor of 60 a ``retryInterval: 1m`` passes
in one real second.

- :class:`ScaledClock` (the on-disk node, shared by processes): simulated time runs ``factor`` times
  faster than real time from a recorded origin, for everything.
- :class:`VirtualClock` (the in-process rehearsal): simulated time stands still while work runs and
  jumps to the next due event when nothing is left to do; with a factor it sleeps the jump divided by
  it (for watching a rehearsal at a chosen pace), without one it does not sleep at all.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from typing import Protocol

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class Clock(Protocol):
    """What controllers read the time from and wait with."""

    def now(self) -> float:
        """Simulated seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass."""
        ...


def parse_duration(text: str | float | int | None, default: float = 0.0) -> float:
    """Seconds of a Go duration (``1m30s``, ``500ms``, ``10m0s``) as Flux's API takes it."""
    if text is None or text == "":
        return default
    if isinstance(text, int | float):
        return float(text)
    value = str(text).strip()
    if value == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(f"time: invalid duration {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """``seconds`` as Go prints a time.Duration (``30s``, ``1m0s``, ``5m0s``, ``1h0m0s``, ``250ms``)."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        ms = seconds * 1000
        return f"{sign}{ms:g}ms" if ms >= 1 else f"{sign}{seconds * 1e6:g}µs"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{sign}{int(minutes)}m{text}"
    return sign + text


def rfc3339(seconds: float) -> str:
    """A timestamp as the API server writes it (``2025-01-02T03:04:05Z``)."""
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (0 when it does not parse)."""
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0


class ScaledClock:
    """Simulated time = ``origin`` + real time since ``real_origin`` times ``factor``."""

    def __init__(self, factor: float = 1.0, origin: float | None = None, real_origin: float | None = None):
        if factor <= 0:
            raise ValueError("the time factor must be positive")
        self.factor = factor
        self.real_origin = time.time() if real_origin is None else real_origin
        self.origin = self.real_origin if origin is None else origin

    def now(self) -> float:
        """The simulated time."""
        return self.origin + (time.time() - self.real_origin) * self.factor

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time (that divided by the factor in real time)."""
        if seconds > 0:
            time.sleep(seconds / self.factor)

    def real_seconds(self, seconds: float) -> float:
        """How long ``seconds`` of simulated time take in real time."""
        return seconds / self.factor


class VirtualClock:
    """Time that moves only when told to (:meth:`advance`), optionally sleeping the jump / ``factor``."""

    def __init__(self, start: float | None = None, factor: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self.start = self._now
        self.factor = factor
        self._lock = threading.Lock()

    def now(self) -> float:
        """The simulated time."""
        with self._lock:
            return self._now

    def advance(self, to: float) -> None:
        """Move to ``to`` (never backwards), sleeping the jump divided by the factor when one is set."""
        with self._lock:
            jump = to - self._now
        if jump <= 0:
            return
        if self.factor:
            time.sleep(jump / self.factor)
        with self._lock:
            self._now = max(self._now, to)

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds``."""
        self.advance(self.now() + seconds)

    def elapsed(self) -> float:
        """Simulated seconds since the clock started."""
        return self.now() - self.start
