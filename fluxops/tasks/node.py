"""invoke node.up / node.verify: bring nodes up with playbooks/node.yaml, check one with testinfra."""

from __future__ import annotations

from invoke import Context, Exit

from fluxops.tasks.common import FAILED, config, from_cwd, print_json, task, usage, user_errors
from fluxops.tasks.play import ACCEPT_HELP, DIFF_HELP, INVENTORY_HELP, JSON_HELP, run_playbook


@task(
    help={
        "host": "the node to bring up (an agent brings its cluster's server along: its token is read there)",
        "cluster": "bring up every node of this cluster: the server, then the agents",
        "check": "change nothing: read each node's state and show what would change",
        "diff": DIFF_HELP,
        "json": JSON_HELP,
        "inventory": INVENTORY_HELP,
        "accept_new_host_key": ACCEPT_HELP,
    },
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
    from fluxops import inventory as inv
    from fluxops import node as nodes
    from fluxops.runner.execute import Options

    if (host is None) == (cluster is None):
        raise usage("node.up needs exactly one of --host and --cluster")
    settings = config(c)
    path = from_cwd(inventory) if inventory else settings.inventory
    limit = nodes.limit(inv.load(path, clusters=settings.clusters, root=settings.root), host, cluster)
    options = Options(check=check, diff=diff, limit=limit, timeout=settings.command_timeout)
    run_playbook(
        settings,
        settings.root / nodes.PLAYBOOK,
        path,
        options,
        json_=json_,
        accept_new_host_key=accept_new_host_key,
    )


@task(
    help={
        "host": "the node to check",
        "inventory": INVENTORY_HELP,
        "json": "print each check and its outcome as JSON (pytest's own output goes to stderr)",
    }
)
@user_errors
def verify(c: Context, host: str, inventory: str | None = None, json_: bool = False) -> None:
    """Check a brought-up node with testinfra (tests/infra/test_node.py) over OpenSSH; exit 1 on a failure."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from fluxops import inventory as inv
    from fluxops import node as nodes
    from fluxops.junit_checks import read_checks, verify_json

    settings = config(c)
    path = from_cwd(inventory) if inventory else settings.inventory
    loaded = inv.load(path, clusters=settings.clusters, root=settings.root)
    with tempfile.TemporaryDirectory(prefix="fluxops-verify-") as folder:
        argv, env = nodes.verify_command(
            settings.root, loaded, host, Path(folder) / "ssh_config", settings.clusters
        )
        report = Path(folder) / "report.xml"
        if json_:
            argv.append(f"--junitxml={report}")
        result = subprocess.run(
            argv, cwd=settings.root, env=env, check=False, stdout=sys.stderr if json_ else None
        )
        if json_:
            # no report: pytest stopped before any check ran (its reason is on stderr)
            checks = read_checks(report) if report.exists() else []
            print_json(verify_json(host, result.returncode, checks))
    if result.returncode != 0:
        raise Exit(f"error: node {host}: checks failed (pytest exit {result.returncode})", code=FAILED)
    if not json_:
        print(f"node {host}: every check passed")
