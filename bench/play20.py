"""The 20-task play with fluxops, ansible-core and pyinfra on one sandbox host; fluxops on 1-16 hosts.

Run (as root, from the repository root; pyinfra comes from a bench-only venv, never .venv):
    .venv/bin/python -m venv bench/.venv-compare && bench/.venv-compare/bin/pip install pyinfra==3.10.0
    .venv/bin/python bench/play20.py                      # 5 runs, 1 2 4 8 16 hosts
    .venv/bin/python bench/play20.py --runs 3 --hosts 1 8 --tools fluxops pyinfra

The play (bench/play20/: fluxops.yaml, ansible.yaml, deploy.py for pyinfra) writes 10 files with given
content, 5 lines into a file and runs 5 commands guarded by a marker file, under /srv/fluxops-bench,
which exists (empty) before a first run. Every figure is the wall time of the whole command, its
interpreter start included, from a process started by this script:

- fluxops:  .venv/bin/invoke play bench/play20/fluxops.yaml --inventory INV
- ansible:  .venv/bin/ansible-playbook -i INV bench/play20/ansible.yaml (bench/play20/ansible.cfg:
            pipelining, ControlMaster auto + ControlPersist 60s, python interpreter given, no facts)
- pyinfra:  bench/.venv-compare/bin/pyinfra -y INV.py bench/play20/deploy.py
- fluxops-lib: the library entry, fluxops.runner.inventory_play, from a script (bench/play20_entry.py)

INV is one inventory file read by fluxops and ansible alike (key, known_hosts with
StrictHostKeyChecking=yes); pyinfra gets the same host, key and known_hosts in its own format.

Comparison, on one host, in rounds (the tools' order rotates each round): empty /srv/fluxops-bench,
first run, check the host's files (the same for every tool), no-op run. Before ansible's first run its
ControlPersist master is closed, so every first run opens its SSH connection; ansible's no-op run
reuses the master its first run left. Every no-op run must report nothing changed. Medians of the
rounds, and ratios to fluxops.

Scaling: the no-op run of the same play with ``invoke play`` on 1, 2, 4, 8 and 16 hosts: one run that
converges the hosts, then the median of --runs runs.

The script boots its own sandbox hosts (max(--hosts) of them, on free /30s of the sandbox subnet, state
in a folder under /tmp) and always stops them at the end, then checks that no process, mount, veth or
route of theirs is left.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fluxops import inventory, sandbox  # noqa: E402
from fluxops.errors import SandboxError  # noqa: E402
from fluxops.sandbox import network  # noqa: E402
from fluxops.settings import DEFAULT_SANDBOX_SUBNET  # noqa: E402
from fluxops.shell import RemoteShell  # noqa: E402

BENCH = REPO / "bench"
PLAY_DIR = BENCH / "play20"
DEST = "/srv/fluxops-bench"
VENV = REPO / ".venv" / "bin"
COMPARE_VENV = BENCH / ".venv-compare" / "bin"
TASKS = 20
TOOLS = ("fluxops", "fluxops-lib", "ansible", "pyinfra")

RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


# --- inventories ---------------------------------------------------------------------------------


def write_inventory(path: Path, state: Path, addresses: Sequence[str]) -> Path:
    """An inventory fluxops and Ansible both read: group ``bench`` with hosts b01..bNN."""
    lines = [
        "all:",
        "  vars:",
        "    ansible_user: root",
        "    ansible_port: 22",
        f"    ansible_ssh_private_key_file: {state / 'id_ed25519'}",
        "    ansible_ssh_common_args: >-",
        f"      -o UserKnownHostsFile={state / 'known_hosts'} -o StrictHostKeyChecking=yes",
        "  children:",
        "    bench:",
        "      hosts:",
    ]
    lines += [f"        b{i:02d}: {{ansible_host: {a}}}" for i, a in enumerate(addresses, 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_pyinfra_inventory(path: Path, state: Path, addresses: Sequence[str]) -> Path:
    """The same hosts for pyinfra: same key, same known_hosts, strict host key checking."""
    data = {
        "ssh_user": "root",
        "ssh_port": 22,
        "ssh_key": str(state / "id_ed25519"),
        "ssh_known_hosts_file": str(state / "known_hosts"),
        "ssh_strict_host_key_checking": "yes",
    }
    hosts = [(f"b{i:02d}", {**data, "ssh_hostname": a}) for i, a in enumerate(addresses, 1)]
    path.write_text(f"bench = {hosts!r}\n")
    return path


# --- running and timing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    seconds: float
    output: str


def timed(argv: Sequence[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> Run:
    """Wall time of ``argv`` from ``cwd`` (the repository root); its output goes to ``log`` (appended)."""
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(argv)}  # {seconds:.3f} s, exit {proc.returncode}\n{proc.stdout}\n")
    if proc.returncode != 0:
        raise SystemExit(
            f"{argv[0]} failed (exit {proc.returncode}); output in {log}:\n{proc.stdout[-3000:]}"
        )
    return Run(seconds, proc.stdout)


def recap_changed(output: str, hosts: int, tool: str) -> int:
    """Tasks changed over all hosts, from a PLAY RECAP (fluxops, ansible); none failed or unreachable."""
    rows = RECAP.findall(output)
    if len(rows) != hosts:
        raise SystemExit(f"{tool}: {len(rows)} recap lines for {hosts} hosts:\n{output[-3000:]}")
    for name, ok, _changed, unreachable, failed in rows:
        if int(unreachable) or int(failed) or int(ok) != TASKS:
            raise SystemExit(
                f"{tool}: {name} ok={ok} unreachable={unreachable} failed={failed}:\n{output[-3000:]}"
            )
    return sum(int(r[2]) for r in rows)


def pyinfra_changed(output: str) -> int:
    """Operations pyinfra ran ('Success' of its results table; unchanged ones count as 'No Change')."""
    match = re.search(r"^\s*Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", output, re.M)
    if match is None:
        raise SystemExit(f"pyinfra: no 'Grand total' line in its results:\n{output[-3000:]}")
    total, success, error, unchanged = (0 if v == "-" else int(v) for v in match.groups())
    if error or success + unchanged != total:
        raise SystemExit(f"pyinfra: {error} errors:\n{output[-3000:]}")
    return success


class Tools:
    """How each tool runs the play, and what it reported."""

    def __init__(self, work: Path, inventories: dict[int, Path], pyinfra_inventory: Path) -> None:
        self.work = work
        self.inventories = inventories
        self.pyinfra_inventory = pyinfra_inventory
        self.log = work / "runs.log"
        self.control_dir = work / "ansible-cp"
        self.control_dir.mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "INVOKE_", "PYINFRA_"))}
        self.env = base
        self.ansible_env = {
            **base,
            "ANSIBLE_CONFIG": str(PLAY_DIR / "ansible.cfg"),
            "ANSIBLE_HOME": str(work / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
        }

    def fluxops(self, hosts: int = 1) -> Run:
        play, inv = str(PLAY_DIR / "fluxops.yaml"), str(self.inventories[hosts])
        return timed([str(VENV / "invoke"), "play", play, "--inventory", inv], self.env, self.log)

    def fluxops_lib(self) -> Run:
        argv = [
            str(VENV / "python"),
            str(BENCH / "play20_entry.py"),
            str(PLAY_DIR / "fluxops.yaml"),
            str(self.inventories[1]),
        ]
        return timed(argv, self.env, self.log)

    def ansible(self) -> Run:
        argv = [
            str(VENV / "ansible-playbook"),
            "-i",
            str(self.inventories[1]),
            str(PLAY_DIR / "ansible.yaml"),
        ]
        return timed(argv, self.ansible_env, self.log)

    def pyinfra(self) -> Run:
        argv = [str(COMPARE_VENV / "pyinfra"), "-y", str(self.pyinfra_inventory), str(PLAY_DIR / "deploy.py")]
        return timed(argv, self.env, self.log)

    def run(self, tool: str) -> Run:
        runs = {"fluxops": self.fluxops, "fluxops-lib": self.fluxops_lib, "ansible": self.ansible}
        return runs.get(tool, self.pyinfra)()

    def changed(self, tool: str, run: Run) -> int:
        return pyinfra_changed(run.output) if tool == "pyinfra" else recap_changed(run.output, 1, tool)

    def close_ansible_masters(self) -> None:
        """End the ControlPersist masters ansible left (through their control sockets)."""
        for sock in self.control_dir.iterdir():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )


# --- the hosts' state ----------------------------------------------------------------------------


def empty_dest(shell: RemoteShell) -> None:
    shell.run(["sh", "-c", f"rm -rf {DEST} && mkdir -p {DEST}"])


def dest_state(shell: RemoteShell) -> str:
    """Each file under DEST: name, mode, size and sha256."""
    script = (
        f"cd {DEST} && for f in *; do "
        """printf '%s %s ' "$f" "$(stat -c '%a %s' "$f")"; sha256sum < "$f"; done"""
    )
    return shell.run(["sh", "-c", script]).stdout


def expected_state(hostname: str) -> str:
    """What the play leaves under DEST: the files of fluxops.yaml, the five lines, the markers."""
    play = yaml.safe_load((PLAY_DIR / "fluxops.yaml").read_text())[0]
    files = {
        Path(t["file"]["path"]).name: t["file"]["content"].encode() for t in play["tasks"] if "file" in t
    }
    files["lines.conf"] = "".join(f"{t['line']['line']}\n" for t in play["tasks"] if "line" in t).encode()
    files.update(
        {
            Path(t["command"]["creates"]).name: f"{hostname}\n".encode()
            for t in play["tasks"]
            if "command" in t
        }
    )
    return "".join(
        f"{name} 644 {len(data)} {hashlib.sha256(data).hexdigest()}  -\n"
        for name, data in sorted(files.items())
    )


def code_version() -> tuple[str, str]:
    """The checkout's commit, uncommitted fluxops files, and a digest of every fluxops/*.py as it is now."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "fluxops"], capture_output=True, text=True
    ).stdout.splitlines()
    digest = hashlib.sha256()
    for path in sorted((REPO / "fluxops").rglob("*.py")):
        digest.update(path.read_bytes())
    note = f"{head}" + (f" + {len(dirty)} uncommitted files under fluxops/" if dirty else "")
    return note, digest.hexdigest()[:12]


# --- sandbox -------------------------------------------------------------------------------------


def boot(
    work: Path, state: Path, count: int, sizes: Sequence[int]
) -> tuple[list[sandbox.HostState], dict[int, Path], Path]:
    """Boot ``count`` hosts on free addresses (a second try on other addresses if another run took one)."""
    shipped = [h.address for h in inventory.load(REPO / "inventory" / "sandbox.yaml").hosts]
    for attempt in range(3):
        addresses = network.free_addresses(DEFAULT_SANDBOX_SUBNET, count, avoid=shipped)
        full = write_inventory(work / f"bench-{count}.yaml", state, addresses)
        inventories = {n: write_inventory(work / f"bench-{n}.yaml", state, addresses[:n]) for n in sizes}
        inventories[1] = write_inventory(work / "bench-1.yaml", state, addresses[:1])
        pyinfra_inventory = write_pyinfra_inventory(work / "pyinfra_inventory.py", state, addresses[:1])
        try:
            states = sandbox.up(inventory.load(full), state, real_inventory=REPO / "inventory" / "hosts.yaml")
            return states, inventories, pyinfra_inventory
        except SandboxError as exc:
            sandbox.down(state)
            if "already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def shut_down(state: Path, work: Path, states: Sequence[sandbox.HostState]) -> None:
    """Stop the sandbox hosts, say what (if anything) was left behind, and remove ``work`` when clean."""
    teardown = sandbox.down(state)
    left = leftovers(work, states)
    for line in teardown.kept:
        print(f"sandbox.down kept: {line}")
    if left:
        print("LEFT BEHIND: " + "; ".join(left))
    else:
        print(f"sandbox down: {len(teardown.stopped)} hosts stopped, no process, mount, veth or route left")
        shutil.rmtree(work, ignore_errors=True)


def leftovers(work: Path, states: Sequence[sandbox.HostState]) -> list[str]:
    """Processes, mounts, veths and routes of this run still present after sandbox.down."""
    found = []
    for s in states:
        if s.nspawn_pid and Path(f"/proc/{s.nspawn_pid}").exists():
            found.append(f"process {s.nspawn_pid} ({s.machine})")
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line.split()[4]}" for line in mounts.splitlines() if str(work) in line.split()[4]]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for s in states:
        if s.veth in links:
            found.append(f"veth {s.veth}")
        if s.network in routes:
            found.append(f"route {s.network}")
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [f"process {line.strip()}" for line in ps.splitlines() if str(work) in line]
    return found


# --- the two benchmarks --------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def compare(
    tools: Tools, shell: RemoteShell, names: Sequence[str], runs: int
) -> dict[str, tuple[list[float], list[float]]]:
    """First and no-op runs of each tool on host b01, in rounds."""
    hostname = shell.run(["hostname"]).stdout.strip()
    want = expected_state(hostname)
    times: dict[str, tuple[list[float], list[float]]] = {t: ([], []) for t in names}
    for round_ in range(runs):
        order = list(names[round_ % len(names) :]) + list(names[: round_ % len(names)])
        for tool in order:
            empty_dest(shell)
            if tool == "ansible":
                tools.close_ansible_masters()
            first = tools.run(tool)
            changed = tools.changed(tool, first)
            if changed != TASKS:
                raise SystemExit(f"{tool}: first run changed {changed} tasks, not {TASKS}")
            got = dest_state(shell)
            if got != want:
                raise SystemExit(
                    f"{tool}: the host's files after the first run differ:\n{got}\nwanted:\n{want}"
                )
            noop = tools.run(tool)
            changed = tools.changed(tool, noop)
            if changed != 0:
                raise SystemExit(f"{tool}: no-op run changed {changed} tasks")
            times[tool][0].append(first.seconds)
            times[tool][1].append(noop.seconds)
            print(
                f"  round {round_ + 1}: {tool:<8} first {first.seconds:6.3f} s  no-op {noop.seconds:6.3f} s",
                flush=True,
            )
    return times


def scale(tools: Tools, sizes: Sequence[int], runs: int) -> dict[int, list[float]]:
    """No-op runs of ``invoke play`` on each number of hosts (after one run that converges them)."""
    times: dict[int, list[float]] = {}
    for n in sizes:
        tools.fluxops(n)
        times[n] = []
        for _ in range(runs):
            run = tools.fluxops(n)
            changed = recap_changed(run.output, n, "fluxops")
            if changed:
                raise SystemExit(f"fluxops on {n} hosts: no-op run changed {changed} tasks")
            times[n].append(run.seconds)
        print(f"  {n:2d} hosts: " + " ".join(f"{t:.3f}" for t in times[n]), flush=True)
    return times


def report_compare(times: dict[str, tuple[list[float], list[float]]], runs: int) -> None:
    """Medians and ranges; each tool's median divided by fluxops' (fluxops' speed-up over it)."""
    base_first, base_noop = (median(times["fluxops"][i]) if "fluxops" in times else 0.0 for i in (0, 1))
    print(f"\n20-task play on one host, median of {runs} (range), wall time with interpreter start")
    print("| tool | first run | no-op run | first run, tool / fluxops | no-op run, tool / fluxops |")
    print("| --- | --- | --- | --- | --- |")
    for tool, (first, noop) in times.items():
        ratios = (
            f"{median(first) / base_first:.2f} | {median(noop) / base_noop:.2f}" if base_first else "- | -"
        )
        print(
            f"| {tool} | {median(first):.2f} s ({min(first):.2f}-{max(first):.2f}) "
            f"| {median(noop):.2f} s ({min(noop):.2f}-{max(noop):.2f}) | {ratios} |"
        )


def report_scale(times: dict[int, list[float]], runs: int) -> None:
    one = median(times[min(times)])
    print(f"\ninvoke play, no-op run of the 20-task play on N hosts, median of {runs} (range)")
    print("| hosts | no-op run | / 1 host |")
    print("| --- | --- | --- |")
    for n, values in times.items():
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"| {n} | {median(values):.2f} s ({spread}) | {median(values) / one:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--hosts", type=int, nargs="*", default=[1, 2, 4, 8, 16], help="sizes for the scaling runs"
    )
    parser.add_argument(
        "--tools", nargs="*", default=list(TOOLS), choices=TOOLS, help="tools of the comparison"
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="copy every run's output to bench/play20-runs.log"
    )
    args = parser.parse_args()
    problems = sandbox.capability_problems()
    if problems:
        sys.exit("; ".join(problems))
    if "pyinfra" in args.tools and not (COMPARE_VENV / "pyinfra").exists():
        sys.exit(f"no {COMPARE_VENV / 'pyinfra'}: see the first lines of {__file__}")
    count = max([1, *args.hosts])
    version, digest = code_version()
    print(f"fluxops at {version} (fluxops/*.py digest {digest})", flush=True)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {count} sandbox hosts", flush=True)
    work = Path(tempfile.mkdtemp(prefix="fluxops-play20-"))
    state = work / "state"
    states: list[sandbox.HostState] = []
    try:
        started = time.perf_counter()
        states, inventories, pyinfra_inventory = boot(work, state, count, args.hosts)
        print(f"sandbox up in {time.perf_counter() - started:.1f} s (state in {state})", flush=True)
        tools = Tools(work, inventories, pyinfra_inventory)
        hosts = inventory.load(inventories[max(inventories)]).hosts
        shells = [RemoteShell(h) for h in hosts]
        try:
            for shell in shells:
                empty_dest(shell)
            compared = compare(tools, shells[0], args.tools, args.runs) if args.tools else {}
            scaled = scale(tools, args.hosts, args.runs) if args.hosts else {}
        finally:
            for shell in shells:
                shell.close()
            tools.close_ansible_masters()
            if args.keep_logs:
                shutil.copy(tools.log, BENCH / "play20-runs.log")
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
        if code_version()[1] != digest:
            print(f"WARNING: fluxops/*.py changed during the run (now {code_version()}): measure again")
        if compared:
            report_compare(compared, args.runs)
        if scaled:
            report_scale(scaled, args.runs)
    finally:
        shut_down(state, work, states)


if __name__ == "__main__":
    main()
