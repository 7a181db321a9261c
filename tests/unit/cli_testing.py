"""The command lines under test: ``invoke`` and ``fluxops`` as fresh processes, and docs/cli.md as data."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "cli.md"
PROGRAMS = ("invoke", "fluxops")
Completed = subprocess.CompletedProcess[str]


def run(
    program: str, *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, stdin: str | None = None
) -> Completed:
    """``PROGRAM ARGS`` in ``cwd`` as a user runs it (``python -m invoke`` / ``python -m fluxops``)."""
    return subprocess.run(
        [sys.executable, "-m", program, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def on_terminal(argv: list[str], cwd: Path = REPO, env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal; its exit code and every byte shown."""
    main, side = pty.openpty()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", **(env or {})},
        stdin=side,
        stdout=side,
        stderr=side,
        close_fds=True,
    )
    os.close(side)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's other side closed: the process ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    return proc.wait(timeout=300), shown


def vocabulary() -> dict[str, dict[str, Any]]:
    """docs/cli.md's flag table: long flag -> {short, tasks}."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not re.fullmatch(r"`--[a-z-]+`", cells[0]):
            continue
        tasks = {t.strip() for t in cells[4].split(",") if t.strip()}
        rows[cells[0].strip("`")] = {"short": cells[1].strip("`") or None, "tasks": tasks}
    return rows


def schemas() -> dict[str, dict[str, Any]]:
    """docs/cli.md's ``--json`` shapes: task name (a ``####`` heading) -> the JSON Schema under it."""
    found = {}
    for section in re.split(r"^#### ", DOCS.read_text(), flags=re.M)[1:]:
        name, _, body = section.partition("\n")
        block = re.search(r"^```json\n(.*?)^```", body, re.M | re.S)
        if block:
            found[name.strip()] = json.loads(block.group(1))
    return found


def local_inventory(folder: Path, port: int | None = None) -> Path:
    """Two hosts in two clusters run on this machine (``ansible_connection: local``), or reached over
    SSH at 127.0.0.1:``port`` when a port is given (nothing listens there: unreachable)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "out").mkdir(exist_ok=True)
    how = f"ansible_port: {port}" if port else "ansible_connection: local"
    path = folder / "hosts.yaml"
    path.write_text(
        f"all:\n  vars:\n    {how}\n    out: {folder / 'out'}\n"
        "  children:\n"
        "    lab:\n      hosts:\n        n5: {ansible_host: 127.0.0.1}\n"
        "    phx:\n      hosts:\n        phx1: {ansible_host: 127.0.0.1}\n"
    )
    return path


# one task that changes each host once (a marker file in the inventory's ``out`` folder)
PLAYBOOK = """\
- name: markers
  hosts: all
  tasks:
    - name: marker
      command:
        argv: [touch, "{{ out }}/{{ inventory_hostname }}"]
        creates: "{{ out }}/{{ inventory_hostname }}"
      tags: [mark]
"""
