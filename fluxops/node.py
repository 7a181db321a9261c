"""Bringing up nodes with ``playbooks/node.yaml`` and checking them (``invoke node.up`` / ``node.verify``).

``limit`` turns ``--host``/``--cluster`` into the playbook's ``--limit`` (an agent brings its cluster's
server along: its join token is read from there); ``play_vars`` gives node.yaml's play variables as
they come out for a host (the pinned flux version, the kernel limits); ``verify_command`` is the
testinfra run of ``tests/infra/test_node.py`` against one host, over OpenSSH with an ssh_config written
from the inventory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fluxops import inventory as inv
from fluxops.errors import ConfigError
from fluxops.runner import playbook, templating

PLAYBOOK = Path("playbooks") / "node.yaml"
CHECKS = Path("tests") / "infra" / "test_node.py"
INVENTORY_ENV = "FLUXOPS_INVENTORY"  # the inventory the checks read their expectations from
CLUSTERS_ENV = "FLUXOPS_CLUSTERS"  # fluxops.clusters for that inventory, as JSON


def server_of(inventory: inv.Inventory, cluster: str) -> inv.Host:
    """The cluster's server (the first, when there are several)."""
    return next(h for h in inventory.cluster(cluster).hosts if h.role == "server")


def limit(inventory: inv.Inventory, host: str | None, cluster: str | None) -> tuple[str, ...]:
    """The ``--limit`` of ``node.up --host H`` or ``--cluster C``: an agent comes with its server."""
    if (host is None) == (cluster is None):
        raise ConfigError("node.up needs exactly one of --host and --cluster")
    if cluster is not None:
        inventory.cluster(cluster)  # an unknown cluster is refused with the known ones
        return (cluster,)
    assert host is not None
    node = inventory.host(host)
    if node.role == "server":
        return (host,)
    return (host, server_of(inventory, node.cluster).name)


def play_vars(variables: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """node.yaml's play variables rendered with ``variables`` (a host's inventory variables); those
    that need more (facts, other hosts) are left out."""
    book = playbook.load(root / PLAYBOOK)
    found: dict[str, Any] = {}
    templar = templating.Templar(dict(variables))
    for play in book.plays:
        for name, value in play.vars.items():
            try:
                found[name] = templar.render(value)
            except (templating.TemplateError, TypeError):
                continue
            templar = templar.with_vars({name: found[name]})
    return found


def ssh_config(host: inv.Host) -> str:
    """An ssh_config block that reaches ``host`` as fluxops does (strict host key checking)."""
    lines = [f"Host {host.name}", f"  HostName {host.address}", f"  Port {host.port}", f"  User {host.user}"]
    if host.key_file is not None:
        lines += [f"  IdentityFile {host.key_file}", "  IdentitiesOnly yes"]
    if host.known_hosts is not None:
        lines.append(f"  UserKnownHostsFile {host.known_hosts}")
    lines += ["  StrictHostKeyChecking yes", "  LogLevel ERROR"]
    return "\n".join(lines) + "\n"


def verify_command(
    root: Path, inventory: inv.Inventory, host: str, config_file: Path, clusters: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The pytest run of the node checks against ``host`` (its ssh_config written to ``config_file``),
    and its environment."""
    node = inventory.host(host)
    config_file.write_text(ssh_config(node))
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(root / CHECKS),
        f"--hosts=ssh://{node.name}",
        f"--ssh-config={config_file}",
        "-p",
        "no:cacheprovider",
    ]
    if node.user != "root":
        argv.append("--sudo")
    env = {**os.environ, INVENTORY_ENV: str(inventory.path), CLUSTERS_ENV: json.dumps(dict(clusters))}
    return argv, env
