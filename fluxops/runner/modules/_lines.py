"""Line edits of a text, as Ansible's lineinfile makes them (computed on the controller, Python ``re``)."""

from __future__ import annotations

import re


def _bare(line: str) -> str:
    return line.rstrip("\r\n")


def ensure_line(text: str, line: str, regexp: str | None = None) -> str:
    """``text`` with ``line`` present: it replaces the last line ``regexp`` matches; without a match
    (or a regexp) the text is kept when ``line`` is there already, else ``line`` is appended."""
    lines = text.splitlines(keepends=True)
    if regexp is not None:
        pattern = re.compile(regexp)
        found = [i for i, current in enumerate(lines) if pattern.search(_bare(current))]
        if found:
            last = found[-1]
            ending = lines[last][len(_bare(lines[last])) :] or "\n"
            lines[last] = line + ending
            return "".join(lines)
    if any(_bare(current) == line for current in lines):
        return text
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join([*lines, line + "\n"])


def remove_lines(text: str, line: str | None = None, regexp: str | None = None) -> str:
    """``text`` without the lines ``regexp`` matches (or, without a regexp, the lines equal to ``line``)."""
    pattern = re.compile(regexp) if regexp is not None else None
    kept = [
        current
        for current in text.splitlines(keepends=True)
        if not (pattern.search(_bare(current)) if pattern is not None else _bare(current) == line)
    ]
    return "".join(kept)


def last_match(text: str, regexp: str) -> str | None:
    """The last line of ``text`` that ``regexp`` matches, without its line ending."""
    pattern = re.compile(regexp)
    found = [_bare(current) for current in text.splitlines(keepends=True) if pattern.search(_bare(current))]
    return found[-1] if found else None
