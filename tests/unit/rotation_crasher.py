"""``invoke`` with a rotation that kills its own process at a chosen point: a crash, not a clean exit.

Run as ``python -m tests.unit.rotation_crasher keys.rotate ...`` with one of:
``CRASH_AFTER_STEP=N`` (SIGKILL right after step N is committed) or ``CRASH_IN_STEP=N:K`` (SIGKILL
after K files of step N were changed). The hooks are the rotation's own progress observers; the
task, the library and sops run exactly as in ``invoke keys.rotate``.
"""

from __future__ import annotations

import os
import signal
import sys

from invoke.main import program

from fluxops.secrets import rotation

AFTER_STEP = "CRASH_AFTER_STEP"
IN_STEP = "CRASH_IN_STEP"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def on_step(step: int) -> None:
    """SIGKILL once the chosen step has committed."""
    if os.environ.get(AFTER_STEP) == str(step):
        _die()


def on_file(step: int, files_done: int) -> None:
    """SIGKILL after the chosen number of files of the chosen step."""
    if os.environ.get(IN_STEP) == f"{step}:{files_done}":
        _die()


class CrashingRotation(rotation.Rotation):
    """A Rotation whose observers crash the process where the environment says."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.on_step = on_step
        self.on_file = on_file


def main() -> None:
    """Run invoke as ``invoke`` does (tasks.py, invoke.yaml of the cwd), with the crashing rotation."""
    import fluxops.tasks.keys as key_tasks

    key_tasks.Rotation = CrashingRotation  # type: ignore[misc]
    program.run(["invoke", *sys.argv[1:]])


if __name__ == "__main__":
    main()
