"""What the node tests share: the simulator's k3s and flux as release artifacts, inventories over the
sandbox hosts, a clean slate, runs of playbooks/node.yaml, snapshots of a sandbox host's overlay upper
directory, and the simulated node's state on a host."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from ruamel.yaml import YAML

from fluxops import inventory as inv
from fluxops import node, sandbox
from fluxops.runner import inventory_play, recap
from fluxops.runner.execute import Options
from fluxops.runner.results import Report, TaskResult
from fluxops.shell import RemoteShell
from fluxops.sim import artifacts

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / node.PLAYBOOK
KERNEL_LIMITS = {
    "fs.inotify.max_user_watches": "inotify_watches",
    "fs.inotify.max_user_instances": "inotify_instances",
}
IGNORED_UPPER = ("var/log/journal",)  # journald logs every SSH session, check mode or not

# What node.yaml leaves on a node, removed (k3s' uninstall script in short), so a test starts fresh.
# kubectl, crictl and ctr go only when they are node.yaml's links to k3s.
RESET = r"""
for unit in k3s k3s-agent; do
  systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
done
for link in kubectl crictl ctr; do
  if [ "$(readlink "/usr/local/bin/$link")" = k3s ]; then rm -f "/usr/local/bin/$link"; fi
done
rm -rf /usr/local/bin/k3s /usr/local/bin/flux /etc/rancher /var/lib/rancher /run/fluxops-stand-in \
  /etc/default/k3s /etc/default/k3s-agent \
  /etc/systemd/system/k3s.service /etc/systemd/system/k3s.service.env \
  /etc/systemd/system/k3s-agent.service /etc/systemd/system/k3s-agent.service.env \
  /etc/sysctl.d/90-k3s.conf /etc/modules-load.d/k3s.conf
systemctl daemon-reload
systemctl reset-failed >/dev/null 2>&1 || true
sysctl -qw net.ipv4.ip_forward=0
"""


def versions(inventory: inv.Inventory) -> tuple[str, str]:
    """The k3s and flux versions node.yaml installs on the inventory's first host."""
    variables = inventory.hosts[0].vars
    return str(variables["k3s_version"]), str(node.play_vars(variables, REPO)["flux_cli_version"])


def build_artifacts(folder: Path, inventory: inv.Inventory) -> artifacts.Artifacts:
    """An artifact folder of the simulator's k3s and flux at the versions node.yaml installs, with an
    images tarball."""
    artifacts.check_visible()
    k3s_version, flux_version = versions(inventory)
    return artifacts.build(folder, k3s_version=k3s_version, flux_version=flux_version, images=True)


def write_inventory(
    dest: Path,
    source: Path,
    *,
    pair: bool,
    variables: Mapping[str, Any],
    host_vars: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """``source`` (a sandbox inventory) with ``variables`` added for all hosts; with ``pair`` every host
    goes into the first host's cluster: the first is its server, the others its agents."""
    ruamel = YAML()
    doc = ruamel.load(source.read_text())
    doc["all"]["vars"].update(variables)
    children = doc["all"]["children"]
    if pair:
        first = next(iter(children))
        hosts: dict[str, Any] = {}
        for group in children.values():
            hosts.update(group["hosts"])
        doc["all"]["children"] = {first: {"vars": dict(children[first].get("vars", {})), "hosts": hosts}}
    for name, extra in (host_vars or {}).items():
        for group in doc["all"]["children"].values():
            if name in group["hosts"]:
                group["hosts"][name].update(extra)
    with dest.open("w") as fh:
        fh.write("# sandbox hosts for the node tests, written by tests/node_support.py\n")
        ruamel.dump(doc, fh)
    return dest


def raise_kernel_limits() -> None:
    """The machine's inotify limits raised to node.yaml's minimums where they are lower.

    They are kernel-wide: a container (a sandbox host) reads the machine's and cannot change them, so
    on container nodes the operator raises them on the machine, as here; node.yaml finds them high
    enough. They are not lowered again afterwards: every systemd container on the machine takes inotify
    instances from the same per-user limit, and other sandbox hosts booted meanwhile may need them.
    """
    wanted = node.play_vars({}, REPO)
    for name, var in KERNEL_LIMITS.items():
        path = Path("/proc/sys") / name.replace(".", "/")
        if int(path.read_text()) < int(wanted[var]):
            path.write_text(f"{wanted[var]}\n")


def reset(hosts: Iterable[inv.Host]) -> None:
    """Take node.yaml's work off each host (services stopped, files removed, ip_forward back to 0)."""
    for host in hosts:
        shell = RemoteShell(host, connect_timeout=10)
        try:
            shell.run(["sh", "-c", RESET], timeout=60)
        finally:
            shell.close()


def on_host(host: inv.Host, script: str) -> str:
    """The output of ``sh -c script`` on ``host`` (fails on a non-zero exit)."""
    shell = RemoteShell(host, connect_timeout=10)
    try:
        return shell.run(["sh", "-c", script], timeout=60).stdout
    finally:
        shell.close()


def node_state(host: inv.Host, role: str) -> dict[str, Any]:
    """The simulated node's state document on ``host`` (the k3s server's or agent's, under
    /var/lib/rancher/k3s/<role>/sim, 0600)."""
    return json.loads(on_host(host, f"cat /var/lib/rancher/k3s/{role}/sim/state.json"))


@contextmanager
def command_lines() -> Iterator[set[bytes]]:
    """Every command line seen on this machine (the sandbox hosts' processes included) while the
    block runs, as /proc/PID/cmdline holds it (NUL-separated)."""
    seen: set[bytes] = set()
    stop = threading.Event()

    def scan() -> None:
        while not stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        seen.add((entry / "cmdline").read_bytes())
                    except OSError:
                        continue

    scanner = threading.Thread(target=scan)
    scanner.start()
    try:
        yield seen
    finally:
        stop.set()
        scanner.join()


class Watcher(recap.TextReporter):
    """The text reporter, calling ``on_result`` with each result as it comes."""

    def __init__(self, console: Console, *, check: bool, on_result: Callable[[TaskResult], None]) -> None:
        super().__init__(console, check=check)
        self.on_result = on_result

    def task_done(self, result: TaskResult) -> None:
        """Show the result, then hand it on."""
        super().task_done(result)
        self.on_result(result)


def run(
    inventory_path: Path,
    *,
    check: bool = False,
    diff: bool = False,
    limit: tuple[str, ...] = (),
    timeout: float = 120.0,
    on_result: Callable[[TaskResult], None] | None = None,
) -> tuple[Report, str]:
    """node.yaml on the inventory's hosts, as ``invoke play`` runs it: the report and the printed text."""
    out = io.StringIO()
    console = Console(file=out, color_system=None, width=200)
    reporter = Watcher(console, check=check, on_result=on_result or (lambda _: None))
    report = inventory_play.play(
        PLAYBOOK,
        inventory_path,
        options=Options(check=check, diff=diff, limit=limit, timeout=timeout),
        reporter=reporter,
        root=REPO,
        connect_timeout=10,
    )
    reporter.recap(report)
    return report, out.getvalue()


def counts(report: Report) -> dict[str, tuple[int, int, int]]:
    """Each host's (changed, failed, unreachable)."""
    return {h: (s.changed, s.failed, s.unreachable) for h, s in report.stats.items()}


def upper_dir(state_dir: Path, name: str) -> Path:
    """The overlay upper directory of sandbox host ``name``: every file the host wrote."""
    state = next(s for s in sandbox.read_state(state_dir) if s.name == name)
    return Path(state.directory) / "upper"


def snapshot(folder: Path) -> dict[str, tuple[object, ...]]:
    """Every path under ``folder`` (the journal aside) with its kind, mode, owner and content hash."""
    found: dict[str, tuple[object, ...]] = {}
    for root, dirs, files in os.walk(folder):
        rel_root = os.path.relpath(root, folder)
        dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel_root, d)) not in IGNORED_UPPER]
        for name in [*dirs, *files]:
            path = Path(root, name)
            rel = os.path.normpath(os.path.join(rel_root, name))
            info = path.lstat()
            if path.is_symlink():
                detail: object = os.readlink(path)
            elif path.is_file():
                detail = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                detail = "dir" if path.is_dir() else "other"
            found[rel] = (info.st_mode, info.st_uid, info.st_gid, detail)
    return found
