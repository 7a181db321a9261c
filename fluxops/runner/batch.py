"""Many facts in one round trip: one ``sh`` script whose output delimits each snippet's output and exit code.

Each snippet runs in its own subshell through ``eval`` (so an ``exit``, a ``cd`` or even a syntax error
stays inside it), with stdin from /dev/null and stderr dropped; a module's own fixed snippet that needs
no isolation runs in a ``{ ...; }`` group instead, saving the fork. Its output is framed by lines that
carry a random marker, fresh for every batch, so no output can forge a frame:

    <marker> begin <n>
    ...the snippet's stdout...
    <marker> end <n> <exit code>

No temporary file, no other program: the script costs at most one subshell per fact and one round trip in all.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from fluxops.shell import quote

MARKER_PREFIX = "fluxops-fact-"


@dataclass(frozen=True)
class Snippet:
    """One read of host state: its key in the batch and the ``sh`` text to run."""

    key: str
    script: str
    isolated: bool = True


@dataclass(frozen=True)
class Answer:
    """What one snippet printed and how it exited."""

    stdout: str
    rc: int


class BatchError(ValueError):
    """The batch's output is not what the script prints: cut short or mangled."""


def new_marker() -> str:
    """A marker no snippet can guess."""
    return MARKER_PREFIX + secrets.token_hex(16)


def script(snippets: Sequence[Snippet], marker: str) -> str:
    """The ``sh`` script that runs every snippet and frames each one's output with ``marker``."""
    lines = ["LC_ALL=C; export LC_ALL"]
    for number, snippet in enumerate(snippets):
        lines.append(f"printf '%s begin {number}\\n' {marker}")
        body = f"eval {quote([snippet.script])}"
        group = f"( {body} )" if snippet.isolated else f"{{ {body}; }}"
        lines.append(f"{group} </dev/null 2>/dev/null; r=$?")
        lines.append(f"printf '\\n%s end {number} %s\\n' {marker} \"$r\"")
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def parse(output: str, snippets: Sequence[Snippet], marker: str) -> dict[str, Answer]:
    """Each snippet's answer by key; BatchError when a frame is missing or out of order."""
    frame = re.compile(
        rf"^{re.escape(marker)} begin (\d+)\n(.*?)\n{re.escape(marker)} end \1 (\d+)$", re.S | re.M
    )
    answers: dict[str, Answer] = {}
    expected = 0
    for match in frame.finditer(output):
        number = int(match.group(1))
        if number != expected or number >= len(snippets):
            raise BatchError(f"fact {number} came where fact {expected} was expected")
        answers[snippets[number].key] = Answer(stdout=match.group(2), rc=int(match.group(3)))
        expected += 1
    if expected != len(snippets):
        missing = snippets[expected].key
        raise BatchError(f"the output stops before fact {missing!r} ({expected} of {len(snippets)} answered)")
    return answers
