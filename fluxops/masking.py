"""Values that must never be shown: a wrapper that prints as *** and a masking helper."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "***"


class Secret:
    """A sensitive string; ``str()`` and ``repr()`` give ``***``, ``reveal()`` the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = value

    def reveal(self) -> str:
        """The real value: pass it only to stdin or a 0600 file, never to argv or a log."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def reveal(value: str | Secret) -> str:
    """The plain text of a value that may be a Secret."""
    return value.reveal() if isinstance(value, Secret) else value


def mask(text: str, secrets: Iterable[str | Secret]) -> str:
    """``text`` with every secret value (and each of its lines) replaced by ``***``."""
    needles: set[str] = set()
    for item in secrets:
        value = reveal(item)
        if not value:
            continue
        needles.add(value)
        needles.update(line for line in value.splitlines() if len(line.strip()) >= 4)
    for needle in sorted(needles, key=len, reverse=True):
        text = text.replace(needle, MASK)
    return text
