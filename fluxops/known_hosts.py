"""known_hosts read the way OpenSSH reads it, and OpenSSH's verdict on a host's key.

A line is ``[@marker] hosts keytype base64 [comment]``. ``hosts`` is a comma list of patterns
(``*`` and ``?`` wildcards, ``!`` to negate, compared without case) or one hashed name
``|1|salt|hash``; a host on a port other than 22 is looked up as ``[address]:port``. Every line for a
host counts: a key on any of them accepts, a key on an ``@revoked`` line refuses even if another line
holds it. ``@cert-authority`` lines are skipped with a note (host certificates are not supported
yet). A line OpenSSH would not parse is skipped with a warning naming its file and line.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import re
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

log = logging.getLogger("fluxops.known_hosts")

DEFAULT_PORT = 22
REVOKED = "@revoked"
CERT_AUTHORITY = "@cert-authority"
HASH_MAGIC = "|1|"
_FIELD_SEPARATOR = re.compile(r"[ \t]+")
_said: set[tuple[str, int, str]] = set()
_said_lock = threading.Lock()
_append_lock = threading.Lock()


class Verdict(Enum):
    """What OpenSSH makes of a host's key (``StrictHostKeyChecking yes``)."""

    OK = "ok"  # a line for the host holds this key
    NEW = "new"  # no line names the host
    CHANGED = "changed"  # lines name the host, none holds this key
    REVOKED = "revoked"  # an @revoked line for the host holds this key


@dataclass(frozen=True)
class Entry:
    """One readable line: where it is, its marker, host patterns and key."""

    path: Path
    line: int
    hosts: str
    key_type: str
    blob: bytes
    marker: str = ""

    @property
    def where(self) -> str:
        """``file:line``, as a warning or an error names it."""
        return f"{self.path}:{self.line}"

    def matches(self, name: str) -> bool:
        """Does this line name the host ``name`` (``address`` or ``[address]:port``)?"""
        return matches(name, self.hosts)


@dataclass(frozen=True)
class Check:
    """The verdict on one key and the lines behind it (the accepting, differing or revoking ones)."""

    verdict: Verdict
    lines: tuple[Entry, ...] = ()


def host_name(address: str, port: int) -> str:
    """The name OpenSSH looks a host up by: ``address`` on port 22, else ``[address]:port``."""
    return address if port == DEFAULT_PORT else f"[{address}]:{port}"


def read(path: Path) -> list[Entry]:
    """Every readable line of ``path`` (none when the file does not exist); bad lines are warned about."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return parse(data.decode(errors="replace"), path)


def parse(text: str, path: Path) -> list[Entry]:
    """The readable lines of known_hosts ``text``; ``path`` only names where they come from."""
    entries = []
    for number, line in enumerate(text.split("\n"), 1):
        parsed = _parse_line(line, path, number)
        if isinstance(parsed, Entry):
            entries.append(parsed)
        elif parsed:
            _say_once(logging.WARNING, path, number, f"skipped: {parsed}")
    return entries


def _parse_line(line: str, path: Path, number: int) -> Entry | str | None:
    """The line's Entry, None for a blank or comment line, or why OpenSSH would skip it."""
    rest = line.lstrip(" \t")
    if not rest or rest.startswith("#"):
        return None
    marker = ""
    if rest.startswith("@"):
        # OpenSSH ends a marker at the line's first space (at a tab only when there is no space)
        end = rest.find(" ") if " " in rest else rest.find("\t")
        marker, rest = (rest[:end], rest[end:].lstrip(" \t")) if end > 0 else (rest, "")
        if marker not in (REVOKED, CERT_AUTHORITY):
            hint = "; OpenSSH needs a space after a marker" if "\t" in marker else ""
            return f"unknown marker {marker[:40]!r} (OpenSSH knows {REVOKED} and {CERT_AUTHORITY}{hint})"
        if rest.startswith("@"):
            return "more than one marker"
    hosts, _, rest = _split(rest)
    if not rest or rest.startswith("#"):
        return "no key after the host names"
    key_type, _, rest = _split(rest)
    encoded = "".join(_split(rest)[0].split())  # OpenSSH's base64 reader skips a stray \r and the like
    if not encoded:
        return f"no key data after the key type {key_type[:40]!r}"
    if hosts.startswith(HASH_MAGIC) and _hashed_parts(hosts) is None:
        return "a hashed host name that does not decode (|1|salt|hash)"
    blob = _key_blob(key_type, encoded)
    if isinstance(blob, str):
        return blob
    return Entry(path=path, line=number, hosts=hosts, key_type=key_type, blob=blob, marker=marker)


def _split(text: str) -> tuple[str, str, str]:
    """The first space/tab-separated field of ``text``, the separator and what follows it."""
    parts = _FIELD_SEPARATOR.split(text, maxsplit=1)
    return (parts[0], " ", parts[1]) if len(parts) == 2 else (parts[0], "", "")


def _key_blob(key_type: str, encoded: str) -> bytes | str:
    """The key's wire bytes, checked as OpenSSH checks them, or why the key is unusable."""
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "the key is not valid base64"
    inner = _blob_type(blob)
    if inner is None:
        return "the key data is too short to hold a key"
    if inner != key_type:
        return f"the key data is a {inner[:40]!r} key, the line says {key_type[:40]!r}"
    try:
        load_ssh_public_key(f"{key_type} {encoded}".encode())
    except UnsupportedAlgorithm:
        pass  # a type cryptography does not read (e.g. FIDO keys): compared byte for byte
    except ValueError:
        return f"the {key_type} key data is damaged"
    return blob


def _blob_type(blob: bytes) -> str | None:
    """The key type an SSH public key blob starts with (its first string)."""
    if len(blob) < 4:
        return None
    (size,) = struct.unpack(">I", blob[:4])
    if size > len(blob) - 4:
        return None
    return blob[4 : 4 + size].decode(errors="replace")


def matches(name: str, hosts: str) -> bool:
    """OpenSSH's match of a host name against a line's hosts field (patterns or one hashed name)."""
    if hosts.startswith(HASH_MAGIC):
        parts = _hashed_parts(hosts)
        if parts is None:
            return False
        salt, digest = parts
        return hmac.compare_digest(hmac.new(salt, name.lower().encode(), hashlib.sha1).digest(), digest)
    found = False
    for pattern in hosts.split(","):
        negated = pattern.startswith("!")
        if _glob(pattern[1:] if negated else pattern).fullmatch(name.lower()):
            if negated:
                return False
            found = True
    return found


def _hashed_parts(hosts: str) -> tuple[bytes, bytes] | None:
    """Salt and digest of a ``|1|salt|hash`` name, or None when it does not decode."""
    fields = hosts[len(HASH_MAGIC) :].split("|")
    if len(fields) != 2:
        return None
    try:
        salt, digest = (base64.b64decode(f, validate=True) for f in fields)
    except (binascii.Error, ValueError):
        return None
    size = hashlib.sha1().digest_size
    return (salt, digest) if len(salt) == size and len(digest) == size else None


@functools.lru_cache(maxsize=512)
def _glob(pattern: str) -> re.Pattern[str]:
    """An OpenSSH host pattern (``*``, ``?``, compared without case) as a regular expression."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.compile("".join(parts))


def check(entries: Sequence[Entry], name: str, blob: bytes) -> Check:
    """OpenSSH's verdict on the key ``blob`` offered by the host looked up as ``name``."""
    for entry in entries:
        if entry.marker == REVOKED and entry.blob == blob and entry.matches(name):
            return Check(Verdict.REVOKED, (entry,))
    plain = [e for e in entries if not e.marker and e.matches(name)]
    for entry in entries:
        if entry.marker == CERT_AUTHORITY and entry.matches(name):
            _say_once(
                logging.WARNING,
                entry.path,
                entry.line,
                f"note: @cert-authority line skipped for {name} (host certificates are not supported yet; "
                "its plain key lines are used)",
            )
    for entry in plain:
        if entry.blob == blob:
            return Check(Verdict.OK, (entry,))
    return Check(Verdict.CHANGED, tuple(plain)) if plain else Check(Verdict.NEW)


def judge(entries: Sequence[Entry], address: str, port: int, blob: bytes) -> Check:
    """OpenSSH's verdict on the key ``blob`` of the host at ``address``:``port``.

    As ``ssh`` does, a host on another port than 22 that no line names as ``[address]:port`` is also
    accepted by a line for the bare ``address`` holding this key.
    """
    result = check(entries, host_name(address, port), blob)
    if result.verdict is Verdict.NEW and port != DEFAULT_PORT:
        bare = check(entries, address, blob)
        if bare.verdict is Verdict.OK:
            return bare
    return result


def known_types(entries: Iterable[Entry], name: str) -> list[str]:
    """Key types the plain lines for ``name`` hold, in file order (OpenSSH negotiates these first)."""
    types: list[str] = []
    for entry in entries:
        if not entry.marker and entry.key_type not in types and entry.matches(name):
            types.append(entry.key_type)
    return types


def append(path: Path, name: str, key_type: str, blob: bytes) -> None:
    """Record a host's key at the end of ``path`` (OpenSSH's ``accept-new``), creating the file."""
    line = f"{name} {key_type} {base64.b64encode(blob).decode()}\n"
    with _append_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b") as fh:
            fh.seek(0, 2)
            if fh.tell() > 0:
                fh.seek(-1, 2)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode())


def _say_once(level: int, path: Path, line: int, message: str) -> None:
    """Log ``path:line: message`` once per process, however many hosts read the file."""
    key = (str(path), line, message)
    with _said_lock:
        if key in _said:
            return
        _said.add(key)
    log.log(level, "%s:%d: %s", path, line, message)
