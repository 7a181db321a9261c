"""invoke bootstrap / reconcile / status: Flux on a brought-up node over SSH, its phases level by level,
and each phase's state (fluxops.bootstrap, docs/bootstrap.md)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from invoke import Context, Exit

from fluxops.tasks.common import (
    FAILED,
    config,
    from_cwd,
    number,
    print_json,
    required,
    task,
    usage,
    user_errors,
)

# How the tasks reach a cluster's server: None opens an SSH connection to it (fluxops.shell); tests
# put a function returning a context manager that yields a fluxops.bootstrap.node.Node here.
NodeOpener = Callable[[Any, Any], AbstractContextManager[Any]]
OPEN_NODE: NodeOpener | None = None

CLUSTER_HELP = "the cluster (an inventory cluster whose server node.up brought up)"
INVENTORY_HELP = "an inventory file instead of the project's (fluxops.inventory)"


def _ssh_node(host: Any, settings: Any) -> AbstractContextManager[Any]:
    from fluxops.bootstrap.node import over_ssh

    return over_ssh(
        host,
        connect_timeout=settings.connect_timeout,
        accept_new_host_key=settings.accept_new_host_key,
        timeout=settings.command_timeout,
    )


def _open(host: Any, settings: Any) -> AbstractContextManager[Any]:
    return (OPEN_NODE or _ssh_node)(host, settings)


def _target(c: Context, cluster: str, inventory: str | None) -> tuple[Any, Any]:
    from fluxops import inventory as inv
    from fluxops.bootstrap.target import target_for

    settings = config(c)
    path = from_cwd(inventory) if inventory else settings.inventory
    loaded = inv.load(path, clusters=settings.clusters, root=settings.root)
    return settings, target_for(settings.root, loaded, cluster)


def _report_json(report: Any) -> dict[str, Any]:
    outcome = report.outcome
    return {
        "cluster": report.cluster,
        "ok": report.ok,
        "steps": [{"step": s, "result": r} for s, r in report.steps],
        "phases": [
            {
                "name": p.name,
                "level": p.level,
                "blocks": p.blocks,
                "state": p.state,
                "seconds": p.seconds,
                "revision": p.revision,
                "message": p.message,
            }
            for p in (outcome.phases if outcome else [])
        ],
        "stopped_at": outcome.stopped_at or None if outcome else None,
        "hint": outcome.hint or None if outcome else None,
        "status": report.status.to_json() if report.status else None,
        "plan": report.plan.to_json() if report.plan else None,
        "seconds": round(report.seconds, 2),
        "waiting": round(report.waiting, 2),
    }


def _finish(report: Any, json_: bool) -> None:
    from fluxops.bootstrap.view import plan_lines, status_table
    from fluxops.tables import console

    if json_:
        print_json(_report_json(report))
    elif report.plan is not None:
        print("\n".join(plan_lines(report.plan)))
    else:
        if report.status is not None:
            console.print(status_table(report.status))
        outcome = report.outcome
        failed = [p for p in outcome.phases if p.state == "failed"] if outcome else []
        for phase in failed:
            blocking = "stopped the bootstrap" if phase.name == outcome.stopped_at else "nothing waits for it"
            print(f"phase {phase.name} failed ({blocking}): {phase.message}")
        if outcome is not None and outcome.hint:
            print(f"what to try: {outcome.hint}")
        print(
            f"{report.cluster}: {'ok' if report.ok else 'FAILED'} in {report.seconds:.1f}s "
            f"({report.waiting:.1f}s waiting for phases)"
        )
    if not report.ok:
        raise Exit(code=FAILED)


@task(
    help={
        "cluster": CLUSTER_HELP,
        "check": "change nothing: print what would be created or changed on the cluster and which phases "
        "would reconcile",
        "timeout": "seconds one command on the node may take (default: fluxops.timeouts.command)",
        "allow_unpushed": "bootstrap even when the local commit is not on the remote Flux reads (Flux "
        "pulls what the remote has)",
        "json": "print the outcome (steps, phases, final status, or the plan) as one JSON document",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def bootstrap(
    c: Context,
    cluster: str | None = None,
    check: bool = False,
    timeout: str | None = None,
    allow_unpushed: bool = False,
    json_: bool = False,
    inventory: str | None = None,
) -> None:
    """Put Flux on a brought-up node over SSH and reconcile its phases level by level (docs/bootstrap.md)."""
    import sys

    from fluxops.bootstrap import run, view

    name = required(cluster, "cluster")
    seconds = number(timeout, "timeout", 1, 86400) if timeout is not None else None
    settings, target = _target(c, name, inventory)
    say = (lambda line: print(line, file=sys.stderr)) if not json_ else (lambda line: None)
    with _open(target.host, settings) as node:
        if seconds is not None:
            node.timeout = seconds
        with view.live(name) as observe:
            report = run.bootstrap(
                target,
                node,
                settings.key_dir,
                check=check,
                allow_unpushed=allow_unpushed,
                say=say,
                observe=None if json_ else observe,
            )
    _finish(report, json_)


@task(
    help={
        "cluster": CLUSTER_HELP,
        "phase": "start from this phase (it and every later level); default: every phase",
        "json": "print the outcome (phases, final status) as one JSON document",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def reconcile(
    c: Context,
    cluster: str | None = None,
    phase: str | None = None,
    json_: bool = False,
    inventory: str | None = None,
) -> None:
    """Reconcile a bootstrapped cluster's phases level by level, as bootstrap's last step does."""
    from fluxops.bootstrap import run, view

    name = required(cluster, "cluster")
    settings, target = _target(c, name, inventory)
    with _open(target.host, settings) as node, view.live(name) as observe:
        report = run.reconcile(
            target, node, from_phase=phase, observe=None if json_ else observe, key_dir=settings.key_dir
        )
    _finish(report, json_)


@task(
    help={
        "cluster": "the cluster to show",
        "all": "every cluster of the inventory, read in parallel",
        "json": "print the clusters' Kustomizations as JSON, in the shape of `flux get kustomizations`",
        "inventory": INVENTORY_HELP,
    }
)
@user_errors
def status(
    c: Context,
    cluster: str | None = None,
    all_: bool = False,
    json_: bool = False,
    inventory: str | None = None,
) -> None:
    """Each phase of a cluster (or of --all): ready or failed, revision, message, age."""
    from fluxops import inventory as inv
    from fluxops.bootstrap.status import statuses
    from fluxops.bootstrap.target import server_of
    from fluxops.bootstrap.view import status_table
    from fluxops.tables import console

    if (cluster is None) == (not all_):
        raise usage("status needs exactly one of --cluster and --all")
    settings = config(c)
    path = from_cwd(inventory) if inventory else settings.inventory
    loaded = inv.load(path, clusters=settings.clusters, root=settings.root)
    names = sorted(loaded.clusters) if all_ else [str(cluster)]
    found = statuses({name: server_of(loaded, name) for name in names}, lambda host: _open(host, settings))
    if json_:
        print_json({"ok": all(s.ok for s in found), "clusters": [s.to_json() for s in found]})
    else:
        for item in found:
            console.print(status_table(item))
    if not all(s.ok for s in found):
        raise Exit(code=FAILED)
