"""What a secret check reports: findings (file, reason, code, where) and their totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESTORE = "restore it from git (`git checkout -- {path}`) or a backup"


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: which file (relative to the root), why, and where in it when known.

    ``document`` (index among the file's non-empty YAML documents) and ``keys`` (the path inside
    it) let a caller with line-numbered YAML point at the spot; ``line`` is set when known here.
    """

    path: str
    reason: str
    code: str = "secret"
    line: int = 0
    document: int = field(default=0, compare=False)
    keys: tuple[Any, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.reason}"


@dataclass
class Report:
    """What a check found, and how many encrypted files it saw and verified by decrypting."""

    findings: list[Finding] = field(default_factory=list)
    encrypted: int = 0
    verified: int = 0


def relative(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as findings name it (POSIX), or as given outside it."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
