"""The processes the fact batch of the 20-task play's no-op run starts, with the runner of a given tree.

Run (from the repository root; needs strace; the tree defaults to this checkout):
    .venv/bin/python bench/fact_processes.py [--tree DIR]

The play (bench/play20/fluxops.yaml) runs on this machine as a local host, its folder
/srv/fluxops-bench swapped for a temporary one: a first run writes the files, a no-op run gives its
fact batch, which then runs again under ``strace -f``. Printed: the batch's size, the processes its
``sh`` starts (forks, subshells included) and the programs they run (execve, by name).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
PLAY = BENCH / "play20" / "fluxops.yaml"
DEST = "/srv/fluxops-bench"


def no_op_batch(folder: Path) -> str:
    """The fact script of a no-op run of the play with its files under ``folder``."""
    from fluxops import shell
    from fluxops.runner import batch, execute, playbook
    from fluxops.runner.targets import local_target

    book = folder / "play.yaml"
    book.write_text(PLAY.read_text().replace(DEST, str(folder)))
    execute.run(playbook.load(book), [local_target("bench")])  # the first run
    sent: list[str] = []
    real_run = shell.LocalShell.run

    def run(self: shell.LocalShell, argv: Any, **kw: Any) -> shell.Result:
        if isinstance(kw.get("stdin"), str) and batch.MARKER_PREFIX in kw["stdin"]:
            sent.append(kw["stdin"])
        return real_run(self, argv, **kw)

    shell.LocalShell.run = run  # type: ignore[method-assign]
    try:
        report = execute.run(playbook.load(book), [local_target("bench")])
    finally:
        shell.LocalShell.run = real_run  # type: ignore[method-assign]
    if report.changed or len(sent) != 1:
        raise SystemExit(f"not a no-op run: {report.changed} changed, {len(sent)} fact batches")
    return sent[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=BENCH.parent, help="a tree with fluxops/")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        sys.exit("strace is not installed")
    sys.path.insert(0, str(args.tree.resolve()))
    import fluxops

    print(f"fluxops from {Path(fluxops.__file__).parent}")
    folder = Path(tempfile.mkdtemp(prefix="fluxops-fact-processes-"))
    try:
        script = no_op_batch(folder)
        trace = folder / "strace.txt"
        subprocess.run(
            [
                "strace",
                "-f",
                "-qq",
                "-e",
                "trace=execve,clone,clone3,fork,vfork",
                "-o",
                str(trace),
                "sh",
                "-s",
            ],
            input=script,
            text=True,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        lines = trace.read_text().splitlines()
        forks = [ln for ln in lines if re.search(r"\b(clone3?|v?fork)\(", ln)]
        programs = collections.Counter(
            Path(m.group(1)).name for ln in lines if (m := re.search(r'execve\("([^"]+)"', ln))
        )
        programs["sh"] -= 1  # the batch's own shell
        shown = ", ".join(f"{name} {count}" for name, count in sorted(programs.items()) if count)
        print(f"no-op fact batch: {len(script)} bytes of script")
        print(f"processes started by its sh: {len(forks)}; programs run: {shown or 'none'}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
