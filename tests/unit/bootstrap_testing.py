"""Bootstrap tests' fixtures: a copy of this repository's tree with test keys, a bare remote it is pushed
to, an inventory naming it, and a simulated k3s node (``k3s server`` under a host prefix) whose
source-controller fetches the tree's URL from that remote."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fluxops import inventory as inv
from fluxops.bootstrap import node as nodes
from fluxops.bootstrap.target import Target, target_for
from fluxops.demo import workspace
from fluxops.secrets import keys, repository
from fluxops.shell import local
from fluxops.sim import host
from tests.unit.sim_testing import GIT_ENV, commit, git

REPO = Path(__file__).resolve().parents[2]
TREE_URL = "ssh://git@github.com/homelab/fluxops.git"  # what k8s/clusters/*/flux-system/gotk-sync.yaml reads
TIME_FACTOR = 30  # a 5m timeout is 10 s: enough for a busy machine, whose slowness the clock multiplies too


def make_template(base: Path) -> tuple[Path, Path]:
    """This repository's tree (k8s/, .sops.yaml, invoke.yaml) with a key per cluster, its secrets
    re-created for those keys, committed on main; and the key store."""
    root, key_dir = base / "repo", base / "keys"
    workspace.copy_tree(REPO, root)
    for cluster in ("lab", "phx"):
        keys.generate(root, key_dir, cluster)
        assert {s.state for s in repository.scaffold(root, key_dir, cluster)} == {"written"}
    commit(root, {}, "the shipped tree, secrets for test keys")
    return root, key_dir


@dataclass
class World:
    """A repository, its key store, the bare remote Flux reads, and the inventory."""

    root: Path
    key_dir: Path
    remote: Path
    inventory: Path

    def push(self) -> str:
        """Push main to the remote; the pushed commit."""
        git(self.root, "push", "--quiet", "--force", str(self.remote), "main")
        return git(self.root, "rev-parse", "main")

    def target(self, cluster: str = "lab") -> Target:
        """The cluster's bootstrap target."""
        return target_for(self.root, inv.load(self.inventory, root=self.root), cluster)


def make_world(template: Path, key_dir: Path, base: Path) -> World:
    """A copy of the template repository pushed to a bare remote its git resolves the tree's URL to."""
    root = base / "repo"
    shutil.copytree(template, root, symlinks=True)
    keys_copy = base / "keys"
    shutil.copytree(key_dir, keys_copy)
    remote = base / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True, env=GIT_ENV)
    git(root, "config", f"url.file://{remote}.insteadOf", TREE_URL)  # git ls-remote TREE_URL reads it
    inventory = base / "inventory.yaml"
    inventory.write_text(
        "all:\n  vars:\n    ansible_user: root\n"
        f"    flux_git_url: {TREE_URL}\n    flux_git_branch: main\n"
        "  children:\n"
        "    lab:\n      vars:\n        flux_path: ./k8s/clusters/lab\n      hosts:\n        n5:\n"
        "          ansible_host: 127.0.0.1\n"
        "    phx:\n      vars:\n        flux_path: ./k8s/clusters/phx\n      hosts:\n        phx1:\n"
        "          ansible_host: 127.0.0.1\n"
    )
    world = World(root, keys_copy, remote, inventory)
    world.push()
    return world


@dataclass
class SimHost:
    """A host prefix running the simulator's ``k3s server``."""

    prefix: Path
    env: dict[str, str]

    def node(self) -> nodes.Node:
        """Bootstrap's view of this node (the simulator's commands through the local shell)."""
        return nodes.simulated(local(), self.prefix)

    def calls(self, tool: str) -> list[dict[str, object]]:
        """Every call of ``tool`` on this host (argv, pid, time)."""
        log = self.prefix / host.CALLS.lstrip("/") / f"{tool}-calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@contextmanager
def sim_host(prefix: Path, remote: Path, name: str = "n5") -> Iterator[SimHost]:
    """A running simulated k3s server whose Node is Ready, fetching the tree's URL from ``remote``."""
    env = {
        **os.environ,
        host.PREFIX_ENV: str(prefix),
        "FLUXOPS_SIM_TIME_FACTOR": str(TIME_FACTOR),
        "FLUXOPS_SIM_SETTINGS": json.dumps(
            {"git_rewrites": {TREE_URL: f"file://{remote}"}, "git_protocols": "file"}
        ),
    }
    env.pop("KUBECONFIG", None)
    config = prefix / host.CONFIG.lstrip("/")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'node-name: {name}\nwrite-kubeconfig-mode: "0600"\n')
    server = subprocess.Popen([sys.executable, "-m", "fluxops.sim.k3s", "server"], env=env)
    try:
        kubeconfig = prefix / host.KUBECONFIG.lstrip("/")
        deadline = time.monotonic() + 30
        while not kubeconfig.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.2)  # the Node turns Ready one second after start
        yield SimHost(prefix, env)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
