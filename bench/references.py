"""Time the forward-reference check (``fluxops.layout.references``) on a loaded tree.

    .venv/bin/python bench/references.py [REPOSITORY]   # default: this checkout

Loads (and builds, cached) the repository once, then runs ``check_references`` over every cluster
50 times; prints the median and the slowest run in milliseconds. Target: well under 50 ms on this
repository.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from fluxops.layout.findings import Findings
from fluxops.layout.references import check_references
from fluxops.layout.tree import load

RUNS = 50


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    tree = load(root)
    times = []
    for _ in range(RUNS):
        findings = Findings()
        start = time.perf_counter()
        for cluster in tree.clusters.values():
            check_references(tree, cluster, findings)
        times.append((time.perf_counter() - start) * 1000)
    objects = sum(len(p.objects) for c in tree.clusters.values() for p in c.phases)
    print(
        f"{root}: {len(tree.clusters)} cluster(s), {objects} objects, {len(findings.items)} finding(s): "
        f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms"
    )


if __name__ == "__main__":
    main()
