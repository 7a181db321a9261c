"""The code base stays ruff clean (lint and format), as CI sees it."""

from __future__ import annotations

import sys
from pathlib import Path

from fluxops.shell import local

REPO = Path(__file__).resolve().parents[2]
RUFF = str(Path(sys.executable).with_name("ruff"))


def test_ruff_lint_is_clean() -> None:
    result = local().run([RUFF, "check", "--no-cache", "."], cwd=REPO, check=False, timeout=120)
    assert result.rc == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = local().run([RUFF, "format", "--check", "--no-cache", "."], cwd=REPO, check=False, timeout=120)
    assert result.rc == 0, result.stdout + result.stderr
