"""invoke play: run a playbook on the inventory's hosts."""

from __future__ import annotations

from pathlib import Path

from invoke import Context, Exit, task

from fluxops.runner import inventory_play, recap
from fluxops.runner.execute import Silent
from fluxops.tables import console
from fluxops.tasks.common import config, user_errors

# invoke gives a task's first positional argument whatever follows the task name, even --help
HELP_FLAGS = ("--help", "-h")


@task(
    help={
        "playbook": "the playbook file to run (e.g. playbooks/node.yaml)",
        "limit": "only these hosts, groups, clusters or roles, comma-separated (e.g. n5 or lab,agent)",
        "tags": "only tasks with one of these tags, comma-separated (tasks tagged always run too)",
        "check": "change nothing: read each host's state and show what would change",
        "diff": "show a unified diff of every file a task changes (or would change with --check)",
        "json": "print the results and recap as one JSON document instead of progress lines",
        "inventory": "use this inventory file instead of the project's (fluxops.inventory in invoke.yaml)",
        "accept_new_host_key": "record the key of a host met for the first time (a changed key is refused)",
    },
)
@user_errors
def play(
    c: Context,
    playbook: str,
    limit: str | None = None,
    tags: str | None = None,
    check: bool = False,
    diff: bool = False,
    json_: bool = False,
    inventory: str | None = None,
    accept_new_host_key: bool = False,
) -> None:
    """Run a playbook on the inventory's hosts: live progress, diffs, a recap; exit 2 if a host failed."""
    if playbook in HELP_FLAGS:
        _print_help()
        return
    settings = config(c)
    options = inventory_play.options(
        check=check, diff=diff, limit=limit, tags=tags, timeout=settings.command_timeout
    )
    progress = recap.TextReporter(console, check=check)
    report = inventory_play.play(
        Path(playbook),
        Path(inventory).resolve() if inventory else settings.inventory,
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


def _print_help() -> None:
    """invoke's own help text of this task (what ``invoke --help play`` prints)."""
    from invoke import Program

    from fluxops.tasks import namespace

    Program(namespace=namespace(), binary="invoke").run(["invoke", "--help", "play"], exit=False)
