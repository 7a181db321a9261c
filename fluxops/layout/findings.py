"""What validation reports: one finding per problem, with where it is and what to change."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

LIST_LIMIT = 10


def listing(items: Iterable[object], limit: int = LIST_LIMIT, sep: str = ", ") -> str:
    """Items joined for a message, cut after ``limit`` of them: ``a, b, c ... and 70 more``.

    One item over the limit is shown rather than counted.
    """
    shown = [str(item) for item in items]
    if len(shown) <= limit + 1:
        return sep.join(shown)
    return f"{sep.join(shown[:limit])} ... and {len(shown) - limit} more"


class Severity(StrEnum):
    """How bad a finding is: errors fail validation, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Finding:
    """One problem in the tree; ``file`` is relative to the repository root."""

    severity: Severity
    code: str
    message: str
    file: str = ""
    line: int | None = None
    cluster: str = ""
    phase: str = ""

    @property
    def where(self) -> str:
        """``file:line`` (or just the file) for a report line."""
        if not self.file:
            return "-"
        return f"{self.file}:{self.line}" if self.line else self.file

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``--json`` output."""
        data = asdict(self)
        data["severity"] = str(self.severity)
        return data


@dataclass
class Findings:
    """An ordered collection of findings, each problem once per cluster.

    The same message at the same place is kept once within a cluster (two phases of it may meet
    the same file) but once for each cluster it concerns, so the report grouped by cluster shows it
    under each.
    """

    items: list[Finding] = field(default_factory=list)
    _seen: set[tuple[Any, ...]] = field(default_factory=set, repr=False)

    def add(self, finding: Finding) -> None:
        """Add a finding unless the same problem at the same place is already there for its cluster."""
        key = (finding.severity, finding.code, finding.message, finding.file, finding.line, finding.cluster)
        if key in self._seen:
            return
        self._seen.add(key)
        self.items.append(finding)

    def error(self, code: str, message: str, **where: Any) -> None:
        """Add an error."""
        self.add(Finding(Severity.ERROR, code, message, **where))

    def warning(self, code: str, message: str, **where: Any) -> None:
        """Add a warning."""
        self.add(Finding(Severity.WARNING, code, message, **where))

    @property
    def errors(self) -> list[Finding]:
        """The findings that fail validation."""
        return [f for f in self.items if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        """The findings that do not fail validation."""
        return [f for f in self.items if f.severity is Severity.WARNING]
