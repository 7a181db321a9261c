"""The secret values among a host's variables, so a module can keep them out of what it shows."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from fluxops.masking import Secret, mask
from fluxops.runner.module import Change


def _walk(value: Any) -> Iterator[str]:
    if isinstance(value, Secret):
        yield value.reveal()
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)


def secret_values(variables: Mapping[str, Any]) -> list[str]:
    """Every non-empty secret value in ``variables`` (mappings and lists walked)."""
    return list(dict.fromkeys(v for v in _walk(variables) if v))


def hide_content(change: Change | None, content: str, variables: Mapping[str, Any]) -> Change | None:
    """``change`` with the secrets ``content`` holds masked in its diff and summary, and its steps' stdin
    sent as a Secret (masked in any error); unchanged when ``content`` holds none."""
    hidden = [value for value in secret_values(variables) if value in content]
    if change is None or not hidden:
        return change
    steps = tuple(
        dataclasses.replace(step, stdin=Secret(content)) if isinstance(step.stdin, bytes) else step
        for step in change.steps
    )
    return dataclasses.replace(
        change, steps=steps, summary=mask(change.summary, hidden), diff=mask(change.diff, hidden)
    )
