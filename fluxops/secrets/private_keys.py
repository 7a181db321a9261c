"""Age private keys where they must never be: in the repository's files, or a key store inside it.

A key is found by its bech32 shape and named by file and line, never echoed.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Iterable
from pathlib import Path

from fluxops.progname import progname
from fluxops.secrets import keystore
from fluxops.secrets.findings import Finding, relative

DEFAULT_KEY_DIR = Path("~/.config/sops/age")


_BECH32 = "02-9ACDEFGHJKLMNPQRSTUVWXYZ"


PRIVATE_KEY_RE = re.compile(
    re.escape(keystore.SECRET_PREFIX).encode() + rb"(?:PQ-)?1[" + _BECH32.encode() + rb"]{58}", re.IGNORECASE
)


def private_key_line(path: Path) -> int:
    """The line of the first age private key in a file (0 if none); read through mmap, never copied out."""
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return 0
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                match = PRIVATE_KEY_RE.search(data)
                return data[: match.start()].count(b"\n") + 1 if match else 0
    except (OSError, ValueError):
        return 0


def private_keys(root: Path, files: Iterable[Path]) -> list[Finding]:
    """Files that hold an age private key (named with the line; the key itself is never echoed)."""
    findings = []
    for path in files:
        line = private_key_line(path)
        if line:
            findings.append(
                Finding(
                    relative(root, path),
                    f"holds an age private key; remove it (and rotate that key: `{progname()} keys.rotate`), "
                    "keys live in the key store outside the repository",
                    "private-key",
                    line,
                )
            )
    return findings


def key_store_inside(root: Path, key_dir: Path | None) -> list[Finding]:
    """A finding when the key store is inside the repository (its keys are one `git add` from a leak)."""
    if key_dir is None:
        return []
    store = Path(key_dir).expanduser().resolve()
    if not store.is_relative_to(Path(root).resolve()):
        return []
    rel = store.relative_to(Path(root).resolve()).as_posix()
    return [
        Finding(
            rel if rel != "." else ".",
            "the age key store (fluxops.key_dir) is inside the repository; move it out "
            f"(e.g. {DEFAULT_KEY_DIR}) and set fluxops.key_dir to it",
            "key-store",
        )
    ]
