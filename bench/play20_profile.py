"""Where the wall time of fluxops' no-op run of the 20-task play goes (bench/play20.py's play).

Run (as root, from the repository root; py-spy from the bench-only venv):
    bench/.venv-compare/bin/pip install py-spy==0.4.3
    .venv/bin/python bench/play20_profile.py [--runs 5]

It boots 8 sandbox hosts of its own (state under /tmp, stopped at the end, as bench/play20.py does)
and measures, each the median of --runs processes started from here:

- the stages of a no-op run on one host: Python start, ``invoke --list`` (Python, invoke, fabric and
  every task module), importing tasks.py with and without the interpreter's shutdown, ``invoke play``
  and the library entry (bench/play20_entry.py); for the runs, the CPU time of the run's process and of
  the hosts (their cgroups: sshd, sh and what it starts);
- the same no-op run on 1, 2, 4 and 8 hosts, with the same CPU figures;
- the imports of ``invoke play`` (``python -X importtime``), by top-level package;
- in this process, through the library entry: opening the SSH connection, then the commands of a first
  and of a no-op run (how many, the bytes of stdin they sent and in how many writes, their time);
- the CPU one host spends on an SSH login and on the no-op run's fact batch;
- py-spy samples (every thread, idle included) of one ``invoke play`` no-op run on 1 and on 8 hosts,
  by stage.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import play20  # noqa: E402
from play20 import PLAY_DIR, REPO, VENV, empty_dest, median, recap_changed, timed  # noqa: E402

from fluxops import inventory, sandbox  # noqa: E402
from fluxops.shell import RemoteShell  # noqa: E402

PY_SPY = BENCH / ".venv-compare" / "bin" / "py-spy"
RATE = 250  # py-spy samples per second


def stage(name: str, argv: list[str], env: dict[str, str], log: Path, runs: int) -> float:
    """Median seconds of ``argv``."""
    times = [timed(argv, env, log).seconds for _ in range(runs)]
    value = median(times)
    print(f"| {name} | {value:.3f} s ({min(times):.3f}-{max(times):.3f}) | |", flush=True)
    return value


def hosts_cpu(states: list[sandbox.HostState]) -> float:
    """CPU seconds used so far by everything in the hosts' cgroups (systemd, sshd, the commands)."""
    total = 0
    for state in states:
        for folder in state.cgroups:
            stat = Path(folder) / "cpu.stat"
            if "/unified/" in folder and stat.exists():
                fields = dict(line.split() for line in stat.read_text().splitlines())
                total += int(fields["usage_usec"])
    return total / 1e6


def cpu_stage(
    name: str, argv: list[str], env: dict[str, str], log: Path, runs: int, states: list[sandbox.HostState]
) -> float:
    """Median seconds of no-op runs of ``argv`` on ``states``' hosts, with the CPU taken here and there."""
    walls, client, remote = [], [], []
    for _ in range(runs):
        before, on_hosts = resource.getrusage(resource.RUSAGE_CHILDREN), hosts_cpu(states)
        run = timed(argv, env, log)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        remote.append(hosts_cpu(states) - on_hosts)
        client.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if recap_changed(run.output, len(states), name):
            raise SystemExit(f"{name}: not a no-op run")
        walls.append(run.seconds)
    wall, mine, theirs = median(walls), median(client), median(remote)
    busy = (mine + theirs) / (wall * (os.cpu_count() or 1))
    print(
        f"| {name} | {wall:.3f} s ({min(walls):.3f}-{max(walls):.3f}) | {mine:.2f} s in the run's "
        f"process, {theirs:.2f} s on the hosts: {busy:.0%} of the machine's cores over the run |",
        flush=True,
    )
    return wall


EXIT_PROBE = """
import sys, time
from invoke.main import program
sys.argv = ["invoke", *sys.argv[1:]]
try:
    program.run()
finally:
    print("returned at", time.monotonic(), file=sys.stderr)
"""


def shutdown(name: str, args: list[str], env: dict[str, str], log: Path, runs: int) -> None:
    """Seconds from invoke's ``program.run()`` returning to the process's end (interpreter shutdown)."""
    gaps = []
    for _ in range(runs):
        run = timed([str(VENV / "python"), "-c", EXIT_PROBE, *args], env, log)
        ended = time.monotonic()
        gaps.append(ended - float(run.output.rsplit("returned at ", 1)[1].split()[0]))
    print(f"| {name} | {median(gaps):.3f} s ({min(gaps):.3f}-{max(gaps):.3f}) | |", flush=True)


def import_times(argv: list[str], env: dict[str, str], top: int = 10) -> None:
    """``python -X importtime`` of ``argv`` (a .venv script): the costliest top-level imports."""
    proc = subprocess.run(
        [str(VENV / "python"), "-X", "importtime", *argv], cwd=REPO, env=env, capture_output=True, text=True
    )
    totals: collections.Counter[str] = collections.Counter()
    line = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)$")
    for text in proc.stderr.splitlines():
        match = line.match(text)
        if match and not match.group(2):  # imported at top level, not by another import
            totals[match.group(3)] += int(match.group(1))
    print(f"imports of one `invoke play` run: {sum(totals.values()) / 1e6:.3f} s in all (-X importtime adds")
    print("its own overhead); the largest modules imported at top level, with what they import:")
    print("| module | seconds |\n| --- | --- |")
    for name, micros in totals.most_common(top):
        print(f"| {name} | {micros / 1e6:.3f} |")


@dataclass(frozen=True)
class RemoteWork:
    """One run in this process: how long the connection took to open, and each command it ran."""

    connect: float
    changed: int
    commands: int
    stdin_bytes: int
    writes: int
    seconds: float  # the commands' time, connection set-up excluded

    def line(self) -> str:
        return (
            f"{self.changed} changed; {self.commands} commands, {self.stdin_bytes} bytes of stdin sent "
            f"in {self.writes} writes, {self.seconds:.3f} s in the commands"
        )


def remote_work(inv: Path) -> RemoteWork:
    """A run of the play in this process, through the library entry, its commands timed."""
    import paramiko

    from fluxops import shell
    from fluxops.runner import inventory_play

    host = inventory.load(inv).hosts[0]
    probe = RemoteShell(host)
    started = time.perf_counter()
    probe.run(["true"])
    connect = time.perf_counter() - started
    probe.close()
    calls: list[tuple[int, float]] = []
    writes = [0]
    real_run, real_send = shell.RemoteShell.run, paramiko.Channel.sendall

    def run(self: RemoteShell, argv: object, **kw: object) -> object:
        if self._conn is None:  # the connection is opened outside the figure
            real_run(self, ["true"])
        started = time.perf_counter()
        try:
            return real_run(self, argv, **kw)  # type: ignore[arg-type]
        finally:
            stdin = kw.get("stdin") or ""
            calls.append((len(stdin), time.perf_counter() - started))  # type: ignore[arg-type]

    def sendall(self: paramiko.Channel, data: bytes) -> None:
        writes[0] += 1
        real_send(self, data)

    shell.RemoteShell.run = run  # type: ignore[method-assign]
    paramiko.Channel.sendall = sendall  # type: ignore[method-assign]
    try:
        options = inventory_play.options(check=False, diff=False, limit=None, tags=None, timeout=600.0)
        report = inventory_play.play(PLAY_DIR / "fluxops.yaml", inv, options=options)
    finally:
        shell.RemoteShell.run = real_run  # type: ignore[method-assign]
        paramiko.Channel.sendall = real_send  # type: ignore[method-assign]
    return RemoteWork(
        connect=connect,
        changed=report.stats[host.name].changed,
        commands=len(calls),
        stdin_bytes=sum(c[0] for c in calls),
        writes=writes[0],
        seconds=sum(c[1] for c in calls),
    )


def host_work(inv: Path, states: list[sandbox.HostState], runs: int) -> None:
    """CPU on the first host of ``inv`` (its cgroups, ``states``) for one SSH login (connect, ``true``,
    close) and for the fact batch of a no-op run, sent again over an open connection; medians of ``runs``."""
    from fluxops.runner import batch, inventory_play

    host = inventory.load(inv).hosts[0]
    sent: list[tuple[list[str], str, float | None]] = []
    real_run = RemoteShell.run

    def run(self: RemoteShell, argv: list[str], **kw: object) -> object:
        stdin = kw.get("stdin")
        if isinstance(stdin, str) and batch.MARKER_PREFIX in stdin:
            sent.append((list(argv), stdin, kw.get("timeout")))  # type: ignore[arg-type]
        return real_run(self, argv, **kw)  # type: ignore[arg-type]

    RemoteShell.run = run  # type: ignore[method-assign,assignment]
    try:
        options = inventory_play.options(check=False, diff=False, limit=None, tags=None, timeout=600.0)
        inventory_play.play(PLAY_DIR / "fluxops.yaml", inv, options=options)
    finally:
        RemoteShell.run = real_run  # type: ignore[method-assign]
    login, facts = [], []
    for _ in range(runs):
        before = hosts_cpu(states)
        shell = RemoteShell(host)
        shell.run(["true"])
        shell.close()
        time.sleep(0.3)  # the host ends the session after the client has gone
        login.append(hosts_cpu(states) - before)
    argv, script, timeout = sent[-1]
    shell = RemoteShell(host)
    shell.run(["true"])
    for _ in range(runs):
        before = hosts_cpu(states)
        shell.run(argv, stdin=script, timeout=timeout)
        time.sleep(0.05)
        facts.append(hosts_cpu(states) - before)
    shell.close()
    print(f"- one SSH login (connect, `true`, close): {median(login) * 1000:.1f} ms of CPU on the host")
    print(
        f"- the no-op run's fact batch ({len(sent)} batch, {len(script)} bytes of script, "
        f"`{' '.join(argv)}`): {median(facts) * 1000:.1f} ms of CPU on the host"
    )


# --- py-spy --------------------------------------------------------------------------------------

Buckets = list[tuple[str, Callable[[str], bool]]]

MAIN: Buckets = [
    ("no Python frame: interpreter start-up and shutdown", lambda s: s == ""),
    ("imports (invoke, fabric, paramiko, every task module, fluxops)", lambda s: "importlib._bootstrap" in s),
    (
        "starting the host threads (submit waits for each new thread)",
        lambda s: "ThreadPoolExecutor.submit" in s,
    ),
    ("waiting for the host threads", lambda s: "Future.result" in s or "ThreadPoolExecutor.__exit__" in s),
    ("playbook load and checks", lambda s: "runner/playbook.py" in s or "runner/validate.py" in s),
    ("inventory load", lambda s: "fluxops/inventory" in s),
    ("closing the connections", lambda s: "Connections.close" in s or "Connections.__exit__" in s),
    ("other (invoke's parsing and config, output)", lambda s: True),
]
HOST: Buckets = [
    ("idle in the pool (its host done, or not started yet)", lambda s: "_WorkItem.run" not in s),
    ("waiting on the import lock while another thread imports", lambda s: "_ModuleLock.acquire" in s),
    ("imports on first use", lambda s: "importlib._bootstrap" in s),
    ("SSH connection: TCP, key exchange, host key, login", lambda s: "_open (fluxops/shell.py" in s),
    (
        "the fact batch: channel opened, command and stdin sent, output awaited",
        lambda s: "Connection.run" in s,
    ),
    ("printing progress lines (rich; one lock for all hosts)", lambda s: "runner/recap.py" in s),
    ("finding the modules (pkgutil scan of runner/modules)", lambda s: "_load_all (fluxops" in s),
    ("templating and planning", lambda s: True),
]


def spy(argv: list[str], out: Path, env: dict[str, str]) -> None:
    """Record ``argv`` with py-spy (raw stacks, every thread, idle included) and print its stages."""
    record = [
        str(PY_SPY),
        "record",
        "--idle",
        "--threads",
        "-r",
        str(RATE),
        "--format",
        "raw",
        "-o",
        str(out),
    ]
    subprocess.run(
        [*record, "--", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    stacks: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    names: dict[str, str] = {}
    for line in out.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        head, _, rest = stack.partition(";")
        ident = head.split(")", 1)[0]  # "thread (ID)", then "thread (ID): NAME" once threading knows it
        name = head.partition("): ")[2]
        stacks[ident].append((rest, int(count)))
        if name:
            names[ident] = name
        if rest.startswith("<module> ("):
            names[ident] = "MainThread"
    print("| thread | stage | seconds |\n| --- | --- | --- |")
    for label, match, buckets in (("main", "MainThread", MAIN), ("host worker", "ThreadPoolExecutor", HOST)):
        threads = [ident for ident in stacks if match in names.get(ident, "")]
        totals: collections.Counter[str] = collections.Counter()
        for ident in threads:
            for stack, count in stacks[ident]:
                totals[next(b for b, test in buckets if test(stack))] += count
        shown = f"{len(threads)} host workers (summed)" if len(threads) > 1 else label
        for bucket, _ in buckets:
            if totals[bucket]:
                print(f"| {shown} | {bucket} | {totals[bucket] / RATE:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not PY_SPY.exists():
        sys.exit(f"no {PY_SPY}: bench/.venv-compare/bin/pip install py-spy")
    version, _ = play20.code_version()
    print(f"fluxops at {version}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    sizes = [1, 2, 4, 8]
    work = Path(tempfile.mkdtemp(prefix="fluxops-play20-profile-"))
    state = work / "state"
    states: list[sandbox.HostState] = []
    try:
        states, inventories, _ = play20.boot(work, state, max(sizes), sizes)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "ANSIBLE_"))}
        log = work / "runs.log"
        play = str(PLAY_DIR / "fluxops.yaml")

        def invoke_play(n: int) -> list[str]:
            return [str(VENV / "invoke"), "play", play, "--inventory", str(inventories[n])]

        shells = [RemoteShell(h) for h in inventory.load(inventories[max(sizes)]).hosts]
        for shell in shells:
            empty_dest(shell)
        timed(invoke_play(max(sizes)), env, log)  # converge every host

        print(
            f"\nno-op run on one host, median of {args.runs}\n| what | wall time | CPU |\n| --- | --- | --- |"
        )
        stage("python -c pass", [str(VENV / "python"), "-c", "pass"], env, log, args.runs)
        stage("invoke --list", [str(VENV / "invoke"), "--list"], env, log, args.runs)
        python = str(VENV / "python")
        stage(
            "python -c 'import tasks' (every task module)",
            [python, "-c", "import tasks"],
            env,
            log,
            args.runs,
        )
        stage(
            "the same, ending with os._exit(0) (no interpreter shutdown)",
            [python, "-c", "import tasks, os; os._exit(0)"],
            env,
            log,
            args.runs,
        )
        cpu_stage("invoke play", invoke_play(1), env, log, args.runs, states[:1])
        entry = [str(VENV / "python"), str(BENCH / "play20_entry.py"), play, str(inventories[1])]
        cpu_stage("library entry (bench/play20_entry.py)", entry, env, log, args.runs, states[:1])

        print(f"\ninvoke play, no-op run on N hosts, median of {args.runs}")
        print("| what | wall time | CPU |\n| --- | --- | --- |")
        walls = {n: cpu_stage(f"{n} hosts", invoke_play(n), env, log, args.runs, states[:n]) for n in sizes}
        print(f"8 hosts / 1 host: {walls[8] / walls[1]:.2f}x\n")
        print("from the end of invoke's program.run() to the end of the process (interpreter shutdown)")
        print("| what | wall time | |\n| --- | --- | --- |")
        for n in (1, 8):
            shutdown(f"invoke play, {n} hosts", invoke_play(n)[1:], env, log, args.runs)
        print()

        import_times(invoke_play(1), env)

        print("\nin this process, through the library entry (commands timed; connection set-up apart)")
        empty_dest(shells[0])
        first = remote_work(inventories[1])
        noop = remote_work(inventories[1])
        print(f"- SSH connection and one `true`: {noop.connect:.3f} s")
        print(f"- first run: {first.line()}")
        print(f"- no-op run: {noop.line()}")
        for shell in shells:
            shell.close()
        print(f"\non the host, median of {args.runs}")
        host_work(inventories[1], states[:1], args.runs)

        for n in (1, 8):
            print(f"\npy-spy, invoke play no-op run on {n} host{'s' if n > 1 else ''}")
            spy(invoke_play(n), work / f"noop-{n}.txt", env)
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    finally:
        play20.shut_down(state, work, states)


if __name__ == "__main__":
    main()
