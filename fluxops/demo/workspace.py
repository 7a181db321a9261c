"""The demo's temporary workspace: a copy of the repository's Flux tree in a git repository of its own,
its own key store, kubeconfig folder and inventory, so the user's keys, ``~/.kube`` and working tree
are never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from fluxops import inventory as inv
from fluxops.errors import FluxopsError
from fluxops.files import atomic_write

TREE = ("k8s", ".sops.yaml", "invoke.yaml")  # what Flux and the secrets tasks read
GIT_TIMEOUT = 120.0
IDENTITY = {
    "GIT_AUTHOR_NAME": "fluxops demo",
    "GIT_AUTHOR_EMAIL": "demo@fluxops.invalid",
    "GIT_COMMITTER_NAME": "fluxops demo",
    "GIT_COMMITTER_EMAIL": "demo@fluxops.invalid",
}
CONNECTION_VARS = {
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_ssh_private_key_file",
    "ansible_ssh_common_args",
    "ansible_become",
    "k3s_role",
}


@dataclass(frozen=True)
class Workspace:
    """The folders of one demo run, all under ``base``."""

    base: Path

    @property
    def root(self) -> Path:
        """The repository copy Flux reads (pushed to each cluster's git remote)."""
        return self.base / "repo"

    @property
    def key_dir(self) -> Path:
        """The demo's key store (0700; keys 0600)."""
        return self.base / "keys"

    @property
    def kube_dir(self) -> Path:
        """Where node.up fetches each cluster's kubeconfig."""
        return self.base / "kube"

    @property
    def artifacts(self) -> Path:
        """The k3s and flux release folder node.up installs from."""
        return self.base / "artifacts"

    @property
    def deploy_key(self) -> Path:
        """The read-only deploy key each cluster's source-controller reads its remote with."""
        return self.base / "deploy" / "id_ed25519"

    @property
    def inventory(self) -> Path:
        """The sandbox inventory with the demo's variables."""
        return self.base / "inventory.yaml"


def git(root: Path, *argv: str) -> str:
    """git in ``root`` with the demo's identity and no user configuration; its stdout."""
    env = {**os.environ, **IDENTITY, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", "-C", str(root), *argv], capture_output=True, text=True, env=env, timeout=GIT_TIMEOUT
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [str(done.returncode)])[-1]
        raise FluxopsError(f"git {argv[0]} in {root} failed: {tail}")
    return done.stdout.strip()


def tree_files(source: Path) -> list[str]:
    """The Flux tree's files of ``source`` as git sees them (tracked, or new and not ignored)."""
    argv = ["git", "-C", str(source), "ls-files", "--cached", "--others", "--exclude-standard", *TREE]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=GIT_TIMEOUT)
    if done.returncode != 0:
        raise FluxopsError(
            f"{source} is not a git checkout ({done.stderr.strip() or done.returncode}): the demo copies "
            "the Flux tree of a clone of the repository"
        )
    return [rel for rel in done.stdout.splitlines() if (source / rel).is_file()]


def copy_tree(source: Path, dest: Path) -> int:
    """Copy the Flux tree of ``source`` into a new git repository ``dest`` on branch main; files copied."""
    files = tree_files(source)
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dest / rel)
    git(dest, "init", "--quiet", "-b", "main")
    return len(files)


def commit(root: Path, message: str) -> str:
    """Commit everything in ``root``; the new commit's sha."""
    git(root, "add", "--all")
    git(root, "commit", "--quiet", "--allow-empty", "-m", message)
    return git(root, "rev-parse", "HEAD")


def make(base: Path, source: Path) -> Workspace:
    """The workspace folders under ``base`` (private to this user) and the tree copied from ``source``."""
    space = Workspace(base)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in (space.key_dir, space.kube_dir, space.deploy_key.parent):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy_tree(source, space.root)
    return space


def _connection(host: inv.Host) -> dict[str, Any]:
    """A host's connection variables with every path absolute (the workspace lies elsewhere)."""
    found: dict[str, Any] = {
        "ansible_host": host.address,
        "ansible_port": host.port,
        "ansible_user": host.user,
        "k3s_role": host.role,
    }
    if host.key_file is not None:
        found["ansible_ssh_private_key_file"] = str(Path(host.key_file).absolute())
    if host.known_hosts is not None:
        known = Path(host.known_hosts).absolute()
        found["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"
    if host.become:
        found["ansible_become"] = True
    return found


def write_inventory(
    dest: Path,
    inventory: inv.Inventory,
    *,
    variables: Mapping[str, Any],
    cluster_vars: Mapping[str, Mapping[str, Any]],
) -> Path:
    """``inventory`` as one YAML file with absolute paths, ``variables`` for every host and
    ``cluster_vars`` for each cluster's hosts."""
    children: dict[str, Any] = {}
    for name, cluster in inventory.clusters.items():
        hosts = {}
        for host in cluster.hosts:
            own = {
                k: v
                for k, v in host.vars.items()
                if k not in CONNECTION_VARS and not k.startswith("ansible_")
            }
            hosts[host.name] = {**own, **variables, **cluster_vars.get(name, {}), **_connection(host)}
        children[name] = {"hosts": hosts}
    yaml = YAML()
    yaml.default_flow_style = False
    text = StringIO()
    text.write(f"# the demo's sandbox hosts ({inventory.path}) with its workspace's variables\n")
    yaml.dump({"all": {"children": children}}, text)
    atomic_write(dest, text.getvalue(), mode=0o600)
    return dest
