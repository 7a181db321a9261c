"""invoke demo: the main job end to end on the sandbox hosts (no real host is contacted)."""

from __future__ import annotations

from invoke import Context, Exit

from fluxops.tasks.common import FAILED, config, task, user_errors


@task(
    help={
        "keep": "leave the sandbox hosts running and the workspace in place afterwards "
        "(stop them with sandbox.down)"
    }
)
@user_errors
def demo(c: Context, keep: bool = False) -> None:
    """Both clusters from nothing to Flux reconciling on the sandbox hosts: keys, secrets, node.up,
    bootstrap in parallel, status, an online key rotation, status; in a temporary workspace."""
    from fluxops.demo import story
    from fluxops.tables import console

    outcome = story.run(config(c), keep=keep, say=console.print)
    if not outcome.ok:
        for failure in outcome.failures:
            console.print(f"[red]FAILED[/] {failure}", highlight=False)
        raise Exit("error: demo: not every step succeeded (see above)", code=FAILED)
    console.print("demo: every step succeeded. Try next:")
    for line in story.next_steps():
        console.print(f"  {line}", highlight=False)
