"""The no-op (or first) run of the 20-task play, this checkout against a baseline tree, alternately.

Run (as root, from the repository root, under the sandbox lock; the baseline is a copy of this tree
with the runner of a given commit):
    B=/tmp/fluxops-base; rm -rf $B && mkdir $B && cp -a fluxops tasks.py invoke.yaml $B/ \
      && rm -r $B/fluxops/runner && git archive HEAD fluxops/runner | tar -x -C $B
    flock /tmp/fluxops-sandbox.lock .venv/bin/python bench/play20_ab.py --baseline $B --hosts 1 8 --rounds 10
    flock /tmp/fluxops-sandbox.lock .venv/bin/python bench/play20_ab.py --baseline $B --hosts 1 --first

It boots its own hosts (as bench/play20.py does), converges them, then runs rounds: in each round
every number of hosts gets one no-op ``invoke play`` of each tree, the trees' order swapped from one
round to the next, so both meet the same load. ``invoke play`` runs from the tree's folder (invoke
loads its tasks.py, which imports that tree's fluxops), with .venv's interpreter and libraries. With
``--first``, each run is a first run instead: the hosts' bench folder is emptied before it (outside
the timed command), and every task must change.

For each tree and number of hosts: the median wall time (interpreter start included), the CPU time
of the run's process and of the hosts (their cgroups: sshd, the shells and what they start), and the
ratio of N hosts to one host.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import play20  # noqa: E402
from play20 import PLAY_DIR, REPO, TASKS, VENV, empty_dest, median, recap_changed, timed  # noqa: E402
from play20_profile import hosts_cpu  # noqa: E402

from fluxops import inventory, sandbox  # noqa: E402
from fluxops.shell import RemoteShell  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "ANSIBLE_"))}


def play_argv(inv: Path) -> list[str]:
    """``invoke play`` of the 20-task play on ``inv``'s hosts (from the folder it is run in)."""
    return [str(VENV / "invoke"), "play", str(PLAY_DIR / "fluxops.yaml"), "--inventory", str(inv)]


@dataclass
class Series:
    """The no-op runs of one tree on one number of hosts."""

    wall: list[float] = field(default_factory=list)
    client: list[float] = field(default_factory=list)
    hosts: list[float] = field(default_factory=list)

    def row(self, tree: str, count: int, one: float) -> str:
        wall = median(self.wall)
        return (
            f"| {tree} | {count} | {wall:.3f} s ({min(self.wall):.3f}-{max(self.wall):.3f}) "
            f"| {wall / one:.2f}x | {median(self.client):.3f} s | {median(self.hosts):.3f} s |"
        )


def noop_run(
    tree: Path, inv: Path, count: int, states: list[sandbox.HostState], log: Path, first: bool = False
) -> tuple[float, ...]:
    """One no-op (or first) ``invoke play`` from ``tree``: wall seconds, CPU here, CPU on the hosts."""
    if first:
        for host in inventory.load(inv).hosts:
            shell = RemoteShell(host)
            empty_dest(shell)
            shell.close()
    before, on_hosts = resource.getrusage(resource.RUSAGE_CHILDREN), hosts_cpu(states)
    run = timed(play_argv(inv), ENV, log, cwd=tree)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    changed = recap_changed(run.output, count, str(tree))
    if changed != (TASKS * count if first else 0):
        raise SystemExit(
            f"{tree} on {count} hosts: {'first' if first else 'no-op'} run changed {changed} tasks"
        )
    client = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return run.seconds, client, hosts_cpu(states) - on_hosts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a tree with fluxops/ and tasks.py")
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--first", action="store_true", help="time first runs instead of no-op runs")
    args = parser.parse_args()
    baseline = args.baseline.resolve()
    if not (baseline / "tasks.py").is_file() or not (baseline / "fluxops").is_dir():
        sys.exit(f"{baseline}: no tasks.py and fluxops/ (see the first lines of {__file__})")
    trees = {"baseline": baseline, "this checkout": REPO}
    version, digest = play20.code_version()
    count = max(args.hosts)
    print(f"fluxops at {version} (fluxops/*.py digest {digest}) against {baseline}", flush=True)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {count} sandbox hosts", flush=True)
    work = Path(tempfile.mkdtemp(prefix="fluxops-play20-ab-"))
    state = work / "state"
    states: list[sandbox.HostState] = []
    log = work / "runs.log"
    try:
        states, inventories, _ = play20.boot(work, state, count, args.hosts)
        shells = [RemoteShell(h) for h in inventory.load(inventories[count]).hosts]
        for shell in shells:
            empty_dest(shell)
            shell.close()
        timed(play_argv(inventories[count]), ENV, log)  # converge every host
        series = {(t, n): Series() for t in trees for n in args.hosts}
        loads = []
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for n in args.hosts:
                for tree in order:
                    wall, client, remote = noop_run(
                        trees[tree], inventories[n], n, states[:n], log, args.first
                    )
                    s = series[(tree, n)]
                    s.wall.append(wall)
                    s.client.append(client)
                    s.hosts.append(remote)
            loads.append(os.getloadavg()[0])
            print(f"  round {round_ + 1}: load average {loads[-1]:.2f}", flush=True)
        if play20.code_version()[1] != digest:
            print(
                f"WARNING: fluxops/*.py changed during the run (now {play20.code_version()}): measure again"
            )
        kind = "first" if args.first else "no-op"
        print(
            f"\n{kind} run, median of {args.rounds} (range); load average {min(loads):.2f}-{max(loads):.2f}"
        )
        print("| tree | hosts | wall time | / 1 host | CPU, run's process | CPU, hosts |")
        print("| --- | --- | --- | --- | --- | --- |")
        for tree in trees:
            one = median(series[(tree, min(args.hosts))].wall)
            for n in args.hosts:
                print(series[(tree, n)].row(tree, n, one))
    finally:
        play20.shut_down(state, work, states)


if __name__ == "__main__":
    main()
