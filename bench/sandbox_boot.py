"""How long sandbox.up takes for N hosts, and what a host costs in memory.

Run (as root, from the repository root):
    .venv/bin/python bench/sandbox_boot.py                 # 1, 2, 8 and 16 hosts, 3 runs each
    .venv/bin/python bench/sandbox_boot.py --hosts 4 --runs 1
For each N and run it writes an inventory of N hosts on free /30s of the sandbox subnet (in a
temporary folder, never the checkout's .sandbox), then: sandbox.up (it returns once fluxops has logged
in to every host over SSH and each host's systemd reports its boot finished), the memory of the
running hosts, sandbox.down. Prints the median of the runs.

Memory per host is summed over every process of the hosts (each host's PID namespace, and its
systemd-nspawn) and divided by N, two ways: the proportional set size (PSS: shared pages split among
the processes that map them; the hosts share the machine's binaries and libraries through the
overlay's lower layer) and the unique set size (USS: pages no other process maps, what stopping the
hosts gives back). Neither counts page cache, the hosts' tmpfs files or the kernel's own memory for
namespaces and veths (MemAvailable of /proc/meminfo moved by more than that between runs here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fluxops import inventory, sandbox  # noqa: E402
from fluxops.sandbox import network  # noqa: E402
from fluxops.settings import DEFAULT_SANDBOX_SUBNET  # noqa: E402

WIDTHS = (5, 7, 14, 14, 8)


def write_inventory(folder: Path, count: int) -> Path:
    """An inventory of ``count`` hosts (one cluster) on free addresses of the sandbox subnet."""
    shipped = [h.address for h in inventory.load(REPO / "inventory" / "sandbox.yaml").hosts]
    addresses = network.free_addresses(DEFAULT_SANDBOX_SUBNET, count, avoid=shipped)
    state = folder / "state"
    lines = [
        "all:",
        "  vars:",
        "    ansible_user: root",
        f"    ansible_ssh_private_key_file: {state / 'id_ed25519'}",
        f"    fluxops_known_hosts_file: {state / 'known_hosts'}",
        "  children:",
        "    bench:",
        "      hosts:",
    ]
    lines += [f"        b{i}: {{ansible_host: {address}}}" for i, address in enumerate(addresses, 1)]
    path = folder / "bench.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def memory_kib(pid: int) -> tuple[int, int]:
    """PSS and USS of ``pid`` in KiB (0, 0 when it is gone)."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Pss", "Private_Clean", "Private_Dirty"):
                values[key] = int(rest.split()[0])
    except OSError:
        return 0, 0
    return values.get("Pss", 0), values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)


def hosts_memory_kib(states: list[sandbox.HostState]) -> tuple[int, int]:
    """PSS and USS of every process in the hosts' PID namespaces, plus their systemd-nspawn processes."""
    namespaces = {os.readlink(f"/proc/{s.init_pid}/ns/pid") for s in states}
    pids = [s.nspawn_pid for s in states]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") in namespaces:
                    pids.append(int(entry))
            except OSError:
                continue
    sizes = [memory_kib(pid) for pid in pids]
    return sum(p for p, _ in sizes), sum(u for _, u in sizes)


def one_run(folder: Path, count: int) -> tuple[float, float, float, float]:
    """Seconds for up, PSS and USS per host (MiB), seconds for down (addresses picked afresh)."""
    hosts = inventory.load(write_inventory(folder, count))
    state = folder / "state"
    started = time.perf_counter()
    states = sandbox.up(hosts, state, real_inventory=REPO / "inventory" / "hosts.yaml")
    up = time.perf_counter() - started
    try:
        time.sleep(2)  # let each host's journald and logind settle
        pss, uss = (kib / len(states) / 1024 for kib in hosts_memory_kib(states))
    finally:
        started = time.perf_counter()
        sandbox.down(state)
        down = time.perf_counter() - started
    return up, pss, uss, down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2, 8, 16])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    problems = sandbox.capability_problems()
    if problems:
        sys.exit("; ".join(problems))
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {args.runs} runs per row (median)")
    columns = ("hosts", "up (s)", "PSS/host (MiB)", "USS/host (MiB)", "down (s)")
    print("  ".join(f"{c:>{w}}" for c, w in zip(columns, WIDTHS, strict=True)))
    for count in args.hosts:
        with tempfile.TemporaryDirectory(prefix="fluxops-bench-") as folder:
            runs = [one_run(Path(folder), count) for _ in range(args.runs)]
        up, pss, uss, down = (statistics.median(r[i] for r in runs) for i in range(4))
        cells = (f"{count}", f"{up:.2f}", f"{pss:.1f}", f"{uss:.1f}", f"{down:.2f}")
        print("  ".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True)))


if __name__ == "__main__":
    main()
