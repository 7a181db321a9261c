"""Time `invoke layout.validate` on the whole tree: cold (no cache) and cached, median of 5 each.

Run from the checkout: .venv/bin/python bench/layout_validate.py
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fluxops.shell import local  # noqa: E402

CACHE = ROOT / ".fluxops" / "cache"
COMMAND = [str(ROOT / ".venv" / "bin" / "invoke"), "layout.validate"]
RUNS = 5


def timed() -> float:
    started = time.perf_counter()
    local().run(COMMAND, cwd=ROOT, timeout=600)
    return time.perf_counter() - started


def main() -> None:
    cold, cached = [], []
    for _ in range(RUNS):
        shutil.rmtree(CACHE, ignore_errors=True)
        cold.append(timed())
        cached.append(timed())
    for name, values in (("cold", cold), ("cached", cached)):
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:7} median {statistics.median(values):.2f} s  (runs: {runs})")


if __name__ == "__main__":
    sys.exit(main())
