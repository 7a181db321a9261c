"""ansible-inventory as the oracle: its ``--list`` view of an inventory, and fluxops's in the same shape."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fluxops import inventory as inv
from fluxops.masking import Secret

ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")


def ansible_env(scratch: Path) -> dict[str, str]:
    """An environment where Ansible reads no user or system config and writes only under ``scratch``."""
    for name in ("home", "ansible", "tmp"):
        (scratch / name).mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    return {
        **keep,
        "HOME": str(scratch / "home"),
        "ANSIBLE_HOME": str(scratch / "ansible"),
        "ANSIBLE_LOCAL_TEMP": str(scratch / "tmp"),
        "ANSIBLE_CONFIG": str(scratch / "ansible.cfg"),  # absent: no ansible.cfg is read
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "ANSIBLE_NOCOLOR": "true",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
    }


def ansible_list(path: Path, scratch: Path) -> dict[str, Any]:
    """``ansible-inventory -i PATH --list``, run in an empty folder (no playbook-side group_vars)."""
    scratch.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(path), "--list"],
        cwd=scratch,
        env=ansible_env(scratch),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if run.returncode != 0:
        raise AssertionError(f"ansible-inventory failed on {path}:\n{run.stderr}")
    return _plain(json.loads(run.stdout))


def ansible_lists(paths: Iterable[Path], scratch: Path) -> dict[Path, dict[str, Any]]:
    """``ansible_list`` of every path, run side by side (one process per file)."""
    paths = list(paths)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        views = pool.map(lambda ip: ansible_list(ip[1], scratch / str(ip[0])), enumerate(paths))
        return dict(zip(paths, views, strict=True))


def fluxops_list(path: Path) -> dict[str, Any]:
    """What fluxops reads from ``path``, in the shape of ``ansible-inventory --list``."""
    resolved = inv.read(path)
    graph = resolved.graph
    view: dict[str, Any] = {}
    for name, group in graph.groups.items():
        entry: dict[str, Any] = {}
        if name != "all" and group.hosts:
            entry["hosts"] = list(group.hosts)
        if group.children:
            entry["children"] = list(group.children)
        if entry:
            view[name] = entry
    hostvars = {h: _plain(v) for h, v in resolved.hostvars.items() if v}
    view["_meta"] = {"hostvars": hostvars}
    return view


def _plain(value: Any) -> Any:
    """JSON-comparable data: Ansible's unsafe wrapper, dates and secrets reduced to plain values."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {str(k): _plain(v) for k, v in value.items() if k != "profile"}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, Secret):
        return value.reveal()
    return value
