"""Run a playbook through the library entry, fluxops.runner.inventory_play, as a script would.

    .venv/bin/python bench/play20_entry.py PLAYBOOK INVENTORY

Prints a line per task and the PLAY RECAP as ``invoke play`` does, without loading invoke's task
collection; exit 2 when a host failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fluxops.runner import inventory_play, recap  # noqa: E402
from fluxops.runner.execute import Silent  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.exit(__doc__)
    playbook, inventory = (Path(a).resolve() for a in argv)
    options = inventory_play.options(check=False, diff=False, limit=None, tags=None, timeout=600.0)
    report = inventory_play.play(playbook, inventory, options=options, reporter=Silent())
    for result in report.results:
        print(recap.task_line(result))
    print("\n".join(recap.recap_lines(report)))
    return 2 if report.failed_hosts else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
