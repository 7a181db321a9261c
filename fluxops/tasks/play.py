"""invoke play: run a playbook on the inventory's hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Context, Exit

from fluxops.tasks.common import FAILED, config, from_cwd, task, user_errors

if TYPE_CHECKING:
    from pathlib import Path

    from fluxops.runner.execute import Options
    from fluxops.settings import Settings

INVENTORY_HELP = (
    "use this inventory file instead of the project's (fluxops.inventory in invoke.yaml); relative to the "
    "current directory"
)
ACCEPT_HELP = "record the key of a host met for the first time (a changed key is refused)"
JSON_HELP = "print the results and recap as one JSON document instead of progress lines"
DIFF_HELP = "show a unified diff of every file a task changes (or would change with --check)"


@task(
    help={
        "playbook": "the playbook file to run (e.g. playbooks/node.yaml), relative to the current directory",
        "limit": "only these hosts, groups, clusters or roles, comma-separated (e.g. n5 or lab,agent)",
        "tags": "only tasks with one of these tags, comma-separated (tasks tagged always run too)",
        "check": "change nothing: read each host's state and show what would change",
        "diff": DIFF_HELP,
        "json": JSON_HELP,
        "inventory": INVENTORY_HELP,
        "accept_new_host_key": ACCEPT_HELP,
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
    """Run a playbook on the inventory's hosts: live progress, diffs, a recap; exit 1 if a host failed."""
    from fluxops.runner import inventory_play

    settings = config(c)
    options = inventory_play.options(
        check=check, diff=diff, limit=limit, tags=tags, timeout=settings.command_timeout
    )
    run_playbook(
        settings,
        from_cwd(playbook),
        from_cwd(inventory) if inventory else settings.inventory,
        options,
        json_=json_,
        accept_new_host_key=accept_new_host_key,
    )


def run_playbook(
    settings: Settings,
    playbook: Path,
    inventory: Path,
    options: Options,
    *,
    json_: bool,
    accept_new_host_key: bool,
) -> None:
    """Run ``playbook`` on ``inventory`` with progress lines and a recap (or one JSON document); exit 1
    naming the hosts that failed. Shared by ``play`` and ``node.up``."""
    from fluxops.runner import inventory_play, recap
    from fluxops.runner.execute import Silent
    from fluxops.tables import console

    progress = recap.TextReporter(console, check=options.check)
    report = inventory_play.play(
        playbook,
        inventory,
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
        raise Exit(f"error: failed: {', '.join(report.failed_hosts)}", code=FAILED)
    if not json_:
        verb = "would change" if options.check else "changed"
        console.print(f"{playbook.name}: {len(report.stats)} host(s) done, {report.changed} task(s) {verb}")
