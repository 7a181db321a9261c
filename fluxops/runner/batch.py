"""Many facts in one round trip: one ``sh`` script whose output delimits each snippet's output and exit code.

Each snippet runs in its own subshell through ``eval`` (so an ``exit``, a ``cd`` or even a syntax error
stays inside it), with stdin from /dev/null and stderr dropped; a module's own fixed snippet that needs
no isolation runs in a ``{ ...; }`` group instead, saving the fork. Its output is framed by lines that
carry a random marker, fresh for every batch, so no output can forge a frame:

    <marker> begin <n>
    ...the snippet's stdout...
    <marker> end <n> <exit code>

A module's own snippet asked for twice (two tasks reading one file) runs once and answers both. The
snippets of one :class:`Reader` (every file fact of the batch) run as one command on the host that
prints each snippet's frame itself, with the output its own snippet would print; on a host without
the program that command needs, each snippet runs on its own.

No temporary file: the script costs at most one subshell per fact and one round trip in all.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fluxops.shell import quote

MARKER_PREFIX = "fluxops-fact-"


class Reader(Protocol):
    """Reads of one kind that one command on the host answers together (the state of many files).

    ``program`` is what that command needs on the host; where it is missing, each read runs its own
    snippet.
    """

    program: str

    def command(self, requests: Sequence[tuple[int, Hashable]], marker: str) -> str:
        """A ``sh`` command that prints, for each (frame number, request), the frame the request's own
        snippet would print: ``<marker> begin <n>``, the same output, then ``\\n<marker> end <n> <rc>``."""
        ...


@dataclass(frozen=True)
class Snippet:
    """One read of host state: its key in the batch and the ``sh`` text to run.

    With a ``reader``, ``request`` is what the reader needs to answer the same as ``script``.
    """

    key: str
    script: str
    isolated: bool = True
    reader: Reader | None = None
    request: Hashable = None


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


@dataclass
class _Frame:
    """One framed answer of the script: the snippet that runs and the keys of every snippet it answers."""

    snippet: Snippet
    keys: list[str] = field(default_factory=list)


def _layout(snippets: Sequence[Snippet]) -> list[list[_Frame]]:
    """The script's frames in the order it prints them, in runs: a snippet alone, or every snippet of a
    reader at the place of its first one. A module's own snippet asked for again adds its key to the
    frame that answers it (an isolated one, which may be any command, runs each time)."""
    runs: list[list[_Frame]] = []
    answering: dict[tuple[object, ...], _Frame] = {}
    of_reader: dict[Reader, list[_Frame]] = {}
    for snippet in snippets:
        same = None if snippet.isolated else (snippet.script, snippet.reader, snippet.request)
        if same is not None and same in answering:
            answering[same].keys.append(snippet.key)
            continue
        frame = _Frame(snippet, [snippet.key])
        if same is not None:
            answering[same] = frame
        if snippet.reader is None:
            runs.append([frame])
        elif snippet.reader in of_reader:
            of_reader[snippet.reader].append(frame)
        else:
            of_reader[snippet.reader] = [frame]
            runs.append(of_reader[snippet.reader])
    return runs


def _framed(number: int, snippet: Snippet, marker: str) -> list[str]:
    """The lines that run ``snippet`` on its own inside frame ``number``."""
    body = f"eval {quote([snippet.script])}"
    group = f"( {body} )" if snippet.isolated else f"{{ {body}; }}"
    return [
        f"printf '%s begin {number}\\n' {marker}",
        f"{group} </dev/null 2>/dev/null; r=$?",
        f"printf '\\n%s end {number} %s\\n' {marker} \"$r\"",
    ]


def script(snippets: Sequence[Snippet], marker: str) -> str:
    """The ``sh`` script that runs every snippet and frames each one's output with ``marker``."""
    lines = ["LC_ALL=C; export LC_ALL"]
    number = 0
    for run in _layout(snippets):
        numbered = list(enumerate(run, number))
        number += len(run)
        alone = [line for n, frame in numbered for line in _framed(n, frame.snippet, marker)]
        reader = run[0].snippet.reader
        if reader is None or len(run) == 1:
            lines += alone
            continue
        requests = [(n, frame.snippet.request) for n, frame in numbered]
        lines.append(f"if command -v {quote([reader.program])} >/dev/null 2>&1; then")
        lines.append(f"{reader.command(requests, marker)} </dev/null 2>/dev/null")
        lines += ["else", *alone, "fi"]
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def parse(output: str, snippets: Sequence[Snippet], marker: str) -> dict[str, Answer]:
    """Each snippet's answer by key; BatchError when a frame is missing or out of order."""
    frames = [frame for run in _layout(snippets) for frame in run]
    pattern = re.compile(
        rf"^{re.escape(marker)} begin (\d+)\n(.*?)\n{re.escape(marker)} end \1 (\d+)$", re.S | re.M
    )
    answers: dict[str, Answer] = {}
    expected = 0
    for match in pattern.finditer(output):
        number = int(match.group(1))
        if number != expected or number >= len(frames):
            raise BatchError(f"fact {number} came where fact {expected} was expected")
        answer = Answer(stdout=match.group(2), rc=int(match.group(3)))
        answers.update((key, answer) for key in frames[number].keys)
        expected += 1
    if expected != len(frames):
        missing = frames[expected].keys[0]
        raise BatchError(f"the output stops before fact {missing!r} ({expected} of {len(frames)} answered)")
    return answers
