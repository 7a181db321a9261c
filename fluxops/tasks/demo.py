"""invoke demo: the main job end to end on the sandbox hosts (no real host is contacted)."""

from __future__ import annotations

from invoke import Context, Exit

from fluxops.tasks.common import FAILED, config, task, user_errors


@task(help={"keep": "leave the sandbox hosts running afterwards (stop them with sandbox.down)"})
@user_errors
def demo(c: Context, keep: bool = False) -> None:
    """Run the main job on the loopback sandbox: hosts up, inventory, host checks, hosts down."""
    from fluxops import demo as demo_lib
    from fluxops.tables import console

    ok = demo_lib.run(config(c), keep=keep, say=console.print)
    if not ok:
        raise Exit("error: demo: some checks failed (see above)", code=FAILED)
    console.print("demo: every check passed")
