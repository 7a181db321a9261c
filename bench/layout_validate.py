"""Time ``layout.validate``: this repository's tree, and a generated ~80-Kustomization repository per
cluster against the serial ``kubectl kustomize`` loop every build-based validator pays.

Run from the checkout: .venv/bin/python bench/layout_validate.py [--runs N] [--clusters 1,2,4]
    [--kustomizations 80] [--skip-tree] [--skip-big] [--tmpdir DIR] [--against OLD_CHECKOUT]

Every timed process runs with a bytecode cache (PYTHONPYCACHEPREFIX in a scratch folder, filled
before timing), as an installed package has one, even where PYTHONDONTWRITEBYTECODE is set.

1. This repository: ``invoke layout.validate`` cold (cache removed) and cached, median of ``--runs``.
2. The repository of bench/big_repo.py with 1, 2 and 4 clusters (``--kustomizations`` Flux
   Kustomizations each): ``validate()`` in a fresh interpreter, cold (an empty cache), each cold run
   followed by ``kubectl kustomize`` of every Kustomization's ``spec.path``, one after another (what
   flux2-kustomize-helm-example's validate.sh and flux-local do per Kustomization), ``--runs``
   times; then warm (the last cache again, ``--runs`` times). Medians; the ratio cold / serial
   loop is the median of each cold run over the loop right after it, of wall time and of CPU
   time (the process and its kubectl children: what the ratio tends to when other work takes the
   cores). Whatever the code finds is counted (errors, warnings, Kustomizations), so the table also
   says how well it read the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.big_repo import BigRepo, write_repo  # noqa: E402
from fluxops.layout.model import CACHE_ENV  # noqa: E402
from fluxops.shell import local  # noqa: E402

BIN = Path(sys.executable).parent
CACHE = ROOT / ".fluxops" / "cache"
INVOKE = [str(BIN / "invoke"), "layout.validate"]
KUBECTL = str(BIN / "kubectl")
CHILD_TIMEOUT = 1800
PYCACHE = Path(tempfile.gettempdir()) / "fluxops-bench-pycache"
VALIDATE_ENV: dict[str, str] = {}  # --tmpdir: TMPDIR of the timed validate processes


def child_env(**extra: str) -> dict[str, str]:
    """This environment with a bytecode cache for the timed interpreters."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(PYCACHE), **extra}


def compile_once() -> None:
    """Fill the bytecode cache before anything is timed."""
    code = "import fluxops.layout.validate, fluxops.tasks, invoke, bench.layout_validate"
    subprocess.run([sys.executable, "-c", code], env=child_env(PYTHONPATH=str(ROOT)), cwd=ROOT, check=True)


def children_cpu() -> float:
    """CPU seconds (user and system) of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- this repository --------------------------------------------------------------------------------


def timed_invoke() -> float:
    started = time.perf_counter()
    local().run(INVOKE, cwd=ROOT, timeout=600, check=False, env=child_env(), inherit_env=False)
    return time.perf_counter() - started


def bench_tree(runs: int) -> None:
    """``invoke layout.validate`` on the checkout, cold and cached."""
    cold, cached = [], []
    for _ in range(runs):
        shutil.rmtree(CACHE, ignore_errors=True)
        cold.append(timed_invoke())
        cached.append(timed_invoke())
    print(f"this repository: invoke layout.validate, {runs} run(s) each")
    for name, values in (("cold", cold), ("cached", cached)):
        each = " ".join(f"{v:.2f}" for v in values)
        print(f"  {name:7} median {statistics.median(values):.2f} s  (runs: {each})")


# -- the generated repository -----------------------------------------------------------------------


@dataclass
class Outcome:
    """One validate run in its own interpreter: wall time, time inside validate(), what it found."""

    wall: float
    cpu: float = 0.0
    inner: float = 0.0
    errors: int = 0
    warnings: int = 0
    kustomizations: int = 0
    failed: str = ""


def child(root: Path) -> None:
    """(In the child process.) Validate ``root``; print what was found as JSON."""
    from fluxops.layout.validate import validate

    started = time.perf_counter()
    try:
        tree, findings = validate(root)
    except Exception as exc:  # today's code may refuse a repository it cannot read
        print(json.dumps({"failed": f"{type(exc).__name__}: {exc}"}))
        return
    print(
        json.dumps(
            {
                "inner": time.perf_counter() - started,
                "errors": len(findings.errors),
                "warnings": len(findings.warnings),
                "kustomizations": sum(len(c.phases) for c in tree.clusters.values()),
            }
        )
    )


def validate_once(root: Path, cache: Path, code: Path = ROOT) -> Outcome:
    """Validate ``root`` in a fresh interpreter with its build cache in ``cache``, with the fluxops of
    the checkout ``code``.
    """
    env = child_env(**{CACHE_ENV: str(cache), "PYTHONPATH": str(code)}, **VALIDATE_ENV)
    started, cpu = time.perf_counter(), children_cpu()
    result = subprocess.run(
        [sys.executable, str(code / "bench" / "layout_validate.py"), "--child", str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return Outcome(wall, cpu, failed=f"exit {result.returncode}: {result.stderr.strip()[-300:]}")
    return Outcome(wall, cpu, **data)


def serial_kustomize(repo: BigRepo) -> tuple[float, float, int]:
    """``kubectl kustomize`` of every Kustomization's path, one after another: (seconds, CPU seconds,
    failures).
    """
    failures = 0
    started, cpu = time.perf_counter(), children_cpu()
    for path in repo.paths:
        result = subprocess.run(
            [KUBECTL, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(repo.root / path)],
            capture_output=True,
            check=False,
        )
        failures += result.returncode != 0
    return time.perf_counter() - started, children_cpu() - cpu, failures


@dataclass
class Row:
    """One repository size: ``runs`` rounds of (cold validate, serial loop), then warm runs."""

    clusters: int
    kustomizations: int
    colds: list[Outcome]
    warm: list[Outcome]
    serials: list[tuple[float, float, int]]  # (seconds, CPU seconds, failures), one per cold run
    load: str

    @property
    def cold(self) -> Outcome:
        """The first cold run (what validate found)."""
        return self.colds[0]

    def median(self, values: Iterable[float]) -> float:
        return statistics.median(values)

    @property
    def ratio(self) -> float:
        """cold / serial, each cold run against the serial loop right after it; the median."""
        return self.median(c.wall / s for c, (s, _, _) in zip(self.colds, self.serials, strict=True))

    @property
    def cpu_ratio(self) -> float:
        return self.median(c.cpu / cpu for c, (_, cpu, _) in zip(self.colds, self.serials, strict=True))


def bench_big(clusters: int, kustomizations: int, runs: int, scratch: Path) -> Row:
    """Cold runs, each followed by the serial loop, then warm runs, on a fresh repository of
    ``clusters`` clusters.
    """
    repo = write_repo(scratch / f"repo-{clusters}", clusters, kustomizations)
    colds, serials = [], []
    for n in range(runs):
        cache = scratch / f"cache-{clusters}-{n}"
        colds.append(validate_once(repo.root, cache))
        serials.append(serial_kustomize(repo))
    warm = [validate_once(repo.root, cache) for _ in range(runs)]
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return Row(clusters, len(repo.paths), colds, warm, serials, load)


def print_rows(rows: list[Row]) -> None:
    header = (
        "clusters  Kustomizations  cold s (in validate)  warm s (in validate)  serial kubectl kustomize s"
        "  cold/serial  CPU cold/serial  found  errors  warnings  load average"
    )
    print(header)
    cold = {r.clusters: r.median(c.wall for c in r.colds) for r in rows}
    serial = {r.clusters: r.median(s for s, _, _ in r.serials) for r in rows}
    for r in rows:
        found = "-" if r.cold.failed else str(r.cold.kustomizations)
        failures = max(f for _, _, f in r.serials)
        cpu = f"{r.median(c.cpu for c in r.colds):.2f}/{r.median(c for _, c, _ in r.serials):.2f}"
        print(
            f"{r.clusters:>8}  {r.kustomizations:>14}  {cold[r.clusters]:>7.2f} "
            f"({r.median(c.inner for c in r.colds):>5.2f})"
            f"       {r.median(o.wall for o in r.warm):>7.2f} ({r.median(o.inner for o in r.warm):>5.2f})"
            f"       {serial[r.clusters]:>20.2f}{'' if not failures else f' ({failures} failed)'}"
            f"  {r.ratio:>11.2f}  {cpu} = {r.cpu_ratio:.2f}"
            f"  {found:>5}  {r.cold.errors:>6}  {r.cold.warnings:>8}  {r.load}"
        )
    for r in rows:
        if r.cold.failed:
            print(f"  {r.clusters} cluster(s): validate failed: {r.cold.failed}")
    first = rows[0].clusters
    for r in rows[1:]:
        extra = (cold[r.clusters] - cold[first]) / (r.clusters - first)
        print(
            f"  {first} -> {r.clusters} clusters: cold +{extra:.2f} s per extra cluster "
            f"({cold[first] / first:.2f} s per cluster at {first}), "
            f"serial loop +{(serial[r.clusters] - serial[first]) / (r.clusters - first):.2f} s per extra one"
        )


def compare(against: Path, kustomizations: int, runs: int, scratch: Path) -> None:
    """This code and the checkout ``against``, alternately, on one 1-cluster repository: each round
    the serial loop, then for each code (in turn first) a cold run (empty cache) and a warm one;
    medians.
    """
    repo = write_repo(scratch / "repo-compare", 1, kustomizations)
    codes = {"this": ROOT, "against": against.resolve()}
    subprocess.run(
        [sys.executable, "-c", "import fluxops.layout.validate"],
        env=child_env(PYTHONPATH=str(codes["against"])),
        check=True,
    )
    rounds: list[dict[str, Any]] = []
    for n in range(runs):
        serial, serial_cpu, _ = serial_kustomize(repo)
        found: dict[str, Any] = {"serial": serial, "serial_cpu": serial_cpu}
        for name, code in list(codes.items())[:: 1 if n % 2 == 0 else -1]:  # each goes first in turn
            cache = scratch / f"cache-compare-{name}-{n}"
            found[name] = (validate_once(repo.root, cache, code), validate_once(repo.root, cache, code))
        found["load"] = os.getloadavg()[0]
        rounds.append(found)
        print(
            f"  round {n + 1}: load {found['load']:.1f}, serial {serial:.2f} s"
            + "".join(f", {k} cold {found[k][0].wall:.2f} warm {found[k][1].wall:.2f}" for k in codes)
        )

    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}"

    print(f"\n{runs} alternating rounds, 1 cluster, {kustomizations} Kustomizations; medians")
    print("code     cold s  warm s  cold/serial  cold CPU s  CPU cold/serial  errors  warnings")
    for name in codes:
        cold = [r[name][0] for r in rounds]
        ratio = median([r[name][0].wall / r["serial"] for r in rounds])
        cpu_ratio = median([r[name][0].cpu / r["serial_cpu"] for r in rounds])
        print(
            f"{name:8} {median([c.wall for c in cold]):>6}  {median([r[name][1].wall for r in rounds]):>6}"
            f"  {ratio:>11}  {median([c.cpu for c in cold]):>10}  {cpu_ratio:>15}"
            f"  {cold[0].errors:>6}  {cold[0].warnings:>8}"
        )
    serial, serial_cpu = median([r["serial"] for r in rounds]), median([r["serial_cpu"] for r in rounds])
    load = median([r["load"] for r in rounds])
    print(f"serial   {serial:>6}  (CPU {serial_cpu} s); load average {load} (median of the rounds)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm (and this tree's) runs, median taken")
    parser.add_argument("--clusters", default="1,2,4", help="cluster counts of the generated repository")
    parser.add_argument("--kustomizations", type=int, default=80, help="Flux Kustomizations per cluster")
    parser.add_argument("--skip-tree", action="store_true", help="do not time this repository's tree")
    parser.add_argument("--skip-big", action="store_true", help="do not time the generated repository")
    parser.add_argument(
        "--tmpdir", help="TMPDIR of the timed validate processes (where Flux overlays get their shadow trees)"
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="a checkout of other code (git archive COMMIT | tar -x -C DIR): time it alternately with this "
        "one on a 1-cluster repository instead of the usual tables",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tmpdir:
        VALIDATE_ENV["TMPDIR"] = args.tmpdir
    if args.child is not None:
        child(args.child)
        return 0
    compile_once()
    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if args.against is not None:
        with tempfile.TemporaryDirectory(prefix="fluxops-bench-") as scratch:
            compare(args.against, args.kustomizations, args.runs, Path(scratch))
        return 0
    if not args.skip_tree:
        bench_tree(args.runs)
    if not args.skip_big:
        counts = [int(c) for c in args.clusters.split(",")]
        with tempfile.TemporaryDirectory(prefix="fluxops-bench-") as scratch:
            rows = [bench_big(n, args.kustomizations, args.runs, Path(scratch)) for n in counts]
        print(f"\ngenerated repository (bench/big_repo.py), {args.kustomizations} Kustomizations per cluster")
        print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
