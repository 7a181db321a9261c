"""pytest's JUnit XML report read back as checks: what ``node.verify --json`` prints."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from fluxops.errors import FluxopsError

# a testcase's child element -> its outcome (no such child: passed)
_OUTCOMES = {"failure": "failed", "error": "error", "skipped": "skipped"}


def read_checks(report: Path) -> list[dict[str, Any]]:
    """Each test case of a ``pytest --junitxml`` report, in run order: its name, outcome, time and
    message (the failure's, error's or skip reason's first line; null when it passed)."""
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError) as exc:
        raise FluxopsError(f"{report}: no readable pytest report ({exc})") from None
    checks = []
    for case in root.iter("testcase"):
        outcome, message = "passed", None
        for child in case:
            if child.tag in _OUTCOMES:
                outcome = _OUTCOMES[child.tag]
                text = child.get("message") or (child.text or "").strip()
                message = text.splitlines()[0] if text else ""
                break
        module = case.get("classname", "")
        checks.append(
            {
                "name": f"{module}::{case.get('name', '')}" if module else case.get("name", ""),
                "outcome": outcome,
                "seconds": round(float(case.get("time") or 0), 3),
                "message": message,
            }
        )
    return checks


def verify_json(host: str, exit_code: int, checks: list[dict[str, Any]]) -> dict[str, Any]:
    """``node.verify --json`` (docs/cli.md): ok exactly when pytest passed (exit 0)."""
    counts = {o: sum(c["outcome"] == o for c in checks) for o in ("passed", "failed", "error", "skipped")}
    return {"host": host, "ok": exit_code == 0, "exit_code": exit_code, **counts, "checks": checks}
