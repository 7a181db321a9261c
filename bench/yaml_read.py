"""How fast the tree's YAML is read as kustomize reads it, against libyaml's floor.

    .venv/bin/python bench/yaml_read.py [REPEAT]

Reads every YAML file of ``k8s/`` REPEAT times over (default 20, about 2,700 documents) with:

- PyYAML's ``CSafeLoader`` (libyaml, plain dicts, YAML 1.1 values): the floor;
- ``fluxops.layout.sources.load_all`` as resources (libyaml, line numbers, go-yaml v3 values,
  kio's document split, duplicate-key check);
- the same rules through the pure-Python parser (what a file with a redefined anchor costs);
- ``read_sources`` of the shipped tree once (what ``layout.validate`` pays on every run).

Target: ``load_all`` within 1.5x the floor (line numbers and values are built in Python).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

from fluxops.layout import yaml_compat
from fluxops.layout.sources import load_all, read_sources, yaml_files

ROOT = Path(__file__).resolve().parent.parent


def best_of(runs: int, work: object) -> float:
    """The least CPU time of ``runs`` runs of ``work()``, in seconds (the machine is shared)."""
    times = []
    for _ in range(runs):
        start = time.process_time()
        work()  # type: ignore[operator]
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    texts = [p.read_text(encoding="utf-8") for p in yaml_files(ROOT / "k8s")] * repeat
    docs = sum(len(load_all(t)) for t in texts)

    def floor() -> None:
        for text in texts:
            list(yaml.load_all(text, Loader=yaml.CSafeLoader))

    def fluxops() -> None:
        for text in texts:
            load_all(text)

    slow = yaml_compat._SOURCE_LOADERS[(True, False)]

    def pure_python() -> None:
        for text in texts[: len(texts) // repeat]:
            yaml_compat._read(text, 0, slow, False)

    base, ours = best_of(5, floor), best_of(5, fluxops)
    python = best_of(3, pure_python) * repeat
    tree = best_of(5, lambda: read_sources(ROOT, [ROOT / "k8s"]))
    print(f"{len(texts)} files, {docs} documents")
    print("| reader | time | per document | vs CSafeLoader |\n| --- | --- | --- | --- |")
    for name, seconds in (
        ("PyYAML CSafeLoader (floor)", base),
        ("fluxops load_all (libyaml)", ours),
        ("same rules, pure-Python parser", python),
    ):
        print(f"| {name} | {seconds * 1000:.0f} ms | {seconds / docs * 1e6:.0f} us | {seconds / base:.2f}x |")
    print(f"read_sources of the shipped k8s/ tree: {tree * 1000:.1f} ms")
    print(f"target load_all <= 1.5x floor: {'met' if ours <= 1.5 * base else 'NOT met'}")


if __name__ == "__main__":
    main()
