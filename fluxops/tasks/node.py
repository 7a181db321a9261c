"""invoke node.up / node.verify: bring nodes up with playbooks/node.yaml, check one with testinfra."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from invoke import Context, Exit, task

from fluxops import inventory as inv
from fluxops import node as nodes
from fluxops.runner import inventory_play, recap
from fluxops.runner.execute import Options, Silent
from fluxops.tables import console
from fluxops.tasks.common import config, user_errors


def _inventory_path(c: Context, inventory: str | None) -> Path:
    return Path(inventory).resolve() if inventory else config(c).inventory


@task(
    help={
        "host": "the node to bring up (an agent brings its cluster's server along: its token is read there)",
        "cluster": "bring up every node of this cluster: the server, then the agents",
        "check": "change nothing: read each node's state and show what would change",
        "diff": "show a unified diff of every file a task changes (or would change with --check)",
        "json": "print the results and recap as one JSON document instead of progress lines",
        "inventory": "use this inventory file instead of the project's (fluxops.inventory in invoke.yaml)",
        "accept_new_host_key": "record the key of a host met for the first time (a changed key is refused)",
    },
    auto_shortflags=False,  # --host would otherwise take -h, which must stay --help
)
@user_errors
def up(
    c: Context,
    host: str | None = None,
    cluster: str | None = None,
    check: bool = False,
    diff: bool = False,
    json_: bool = False,
    inventory: str | None = None,
    accept_new_host_key: bool = False,
) -> None:
    """Turn hosts into k3s nodes (playbooks/node.yaml): OS prep, k3s pinned, kubeconfig, flux CLI."""
    settings = config(c)
    path = _inventory_path(c, inventory)
    limit = nodes.limit(inv.load(path, clusters=settings.clusters, root=settings.root), host, cluster)
    options = Options(check=check, diff=diff, limit=limit, timeout=settings.command_timeout)
    progress = recap.TextReporter(console, check=check)
    report = inventory_play.play(
        settings.root / nodes.PLAYBOOK,
        path,
        options=options,
        reporter=Silent() if json_ else progress,
        clusters=settings.clusters,
        root=settings.root,
        connect_timeout=settings.connect_timeout,
        accept_new_host_key=accept_new_host_key or settings.accept_new_host_key,
    )
    if json_:
        print(recap.as_json(report))
    else:
        progress.recap(report)
    if report.failed_hosts:
        raise Exit(f"failed: {', '.join(report.failed_hosts)}", code=2)


@task(
    help={
        "host": "the node to check",
        "inventory": "use this inventory file instead of the project's (fluxops.inventory in invoke.yaml)",
    },
    auto_shortflags=False,
)
@user_errors
def verify(c: Context, host: str, inventory: str | None = None) -> None:
    """Check a brought-up node with testinfra (tests/infra/test_node.py) over OpenSSH; exit 1 on a failure."""
    settings = config(c)
    loaded = inv.load(_inventory_path(c, inventory), clusters=settings.clusters, root=settings.root)
    with tempfile.TemporaryDirectory(prefix="fluxops-verify-") as folder:
        argv, env = nodes.verify_command(
            settings.root, loaded, host, Path(folder) / "ssh_config", settings.clusters
        )
        result = subprocess.run(argv, cwd=settings.root, env=env, check=False)
    if result.returncode != 0:
        raise Exit(f"node {host}: checks failed (pytest exit {result.returncode})", code=1)
