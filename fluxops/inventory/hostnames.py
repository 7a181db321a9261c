"""Host names as Ansible reads them: an optional ``:port``, and ``[x:y(:step)]`` ranges expanded.

Ansible accepts IPv4 and IPv6 addresses, DNS names (underscores allowed) and patterns with ranges
such as ``node[01:03]``, ``db-[a:c]`` or ``web[1:10:4].example.com``. ``host:port`` (or
``[address]:port``) sets the host's ``ansible_port``. Anything else is taken as written, as Ansible
does; such a host needs ``ansible_host`` to be reachable.
"""

from __future__ import annotations

import re
import string

_NUMERIC_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_HEX_RANGE = r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_IPV4_PART = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUMERIC_RANGE})"
_IPV6_PART = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"

_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_IPV4 = re.compile(rf"^(?:{_IPV4_PART}\.){{3}}{_IPV4_PART}$", re.I)
_IPV6 = re.compile(
    "^("
    + "|".join(
        p.format(c=_IPV6_PART, v4=rf"(?:{_IPV6_PART}\.){{3}}{_IPV6_PART}")
        for p in (
            r"(?:{c}:){{7}}{c}",
            r"(?:{c}:){{1,6}}:",
            r"(?:{c}:)(?::{c}){{1,6}}",
            r"(?:{c}:){{2}}(?::{c}){{1,5}}",
            r"(?:{c}:){{3}}(?::{c}){{1,4}}",
            r"(?:{c}:){{4}}(?::{c}){{1,3}}",
            r"(?:{c}:){{5}}(?::{c}){{1,2}}",
            r"(?:{c}:){{6}}(?::{c})",
            r":(?::{c}){{1,6}}",
            r"{c}?::",
            r"(?:0:){{6}}{v4}",
            r"::(?:ffff:)?{v4}",
            r"(?:0:){{5}}ffff:{v4}",
        )
    )
    + ")$",
    re.I,
)
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I | re.UNICODE)


class HostPatternError(ValueError):
    """A host pattern whose range cannot be expanded; the message says what is wrong."""


def split_port(pattern: str) -> tuple[str, int | None]:
    """``(name, port)`` of ``pattern``: ``n5:2222`` -> ``("n5", 2222)``; a bare name has no port."""
    name, port = pattern, None
    for regex in (_BRACKETED_PORT, _HOST_PORT):
        match = regex.match(name)
        if match:
            name, port = match.group(1), int(match.group(2))
    if not is_address(name):
        return pattern, None  # Ansible keeps a pattern it does not recognise whole, port and all
    return name, port


def is_address(name: str) -> bool:
    """True for an IPv4/IPv6 address or a DNS name (ranges allowed), as Ansible checks them."""
    return any(regex.match(name) for regex in (_IPV4, _IPV6, _HOSTNAME))


def expand(pattern: str) -> tuple[list[str], int | None]:
    """The host names of ``pattern`` with its ``[x:y(:step)]`` ranges expanded, and its port."""
    name, port = split_port(pattern)
    return (_expand_ranges(name) if "[" in name else [name]), port


def _expand_ranges(name: str) -> list[str]:
    head, _, rest = name.partition("[")
    spec, closed, tail = rest.partition("]")
    if not closed:
        raise HostPatternError(f"host range in {name!r} has no closing ']'")
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise HostPatternError(f"host range [{spec}] must be begin:end or begin:end:step")
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise HostPatternError(f"host range [{spec}] must give an end value")
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise HostPatternError(f"host range [{spec}]: the step must be a number") from None
    if step < 1:
        raise HostPatternError(f"host range [{spec}]: the step must be 1 or more")
    items = _range_items(spec, begin, end, step)
    names: list[str] = []
    for item in items:
        expanded = f"{head}{item}{tail}"
        names.extend(_expand_ranges(expanded) if "[" in expanded else [expanded])
    return names


def _range_items(spec: str, begin: str, end: str, step: int) -> list[str]:
    letters = string.ascii_letters
    if begin in letters and end in letters and len(begin) == len(end) == 1:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise HostPatternError(f"host range [{spec}] must have begin <= end")
        return list(letters[first : last + 1 : step])
    if not (begin.isdigit() and end.isdigit()):
        raise HostPatternError(f"host range [{spec}] must be two numbers or two letters")
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and width != len(end):
        raise HostPatternError(f"host range [{spec}]: zero-padded begin and end must have the same length")
    return [str(n).zfill(width) for n in range(int(begin), int(end) + 1, step)]
