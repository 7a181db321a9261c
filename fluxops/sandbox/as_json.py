"""The sandbox tasks' ``--json`` documents (docs/cli.md): hosts started, their status, a teardown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fluxops.sandbox.lifecycle import HostStatus, Teardown
from fluxops.sandbox.record import HostState


def _host(h: HostState | HostStatus) -> dict[str, Any]:
    """What every sandbox document says of a host: where it is and which container runs it."""
    return {
        "host": h.name,
        "cluster": h.cluster,
        "address": h.address,
        "port": h.port,
        "machine": h.machine,
        "veth": h.veth,
    }


def started(hosts: list[HostState], ssh_config: Path) -> dict[str, Any]:
    """``sandbox.up --json``: every host booted and answering SSH, and the ssh_config that reaches them."""
    return {
        "ok": True,
        "ssh_config": str(ssh_config),
        "hosts": [
            {**_host(h), "machine_address": h.machine_address, "nspawn_pid": h.nspawn_pid} for h in hosts
        ],
    }


def status(hosts: list[HostStatus]) -> dict[str, Any]:
    """``sandbox.status --json``: ok when there are hosts and every one runs and answers SSH."""
    return {
        "ok": bool(hosts) and all(h.running and h.listening for h in hosts),
        "hosts": [
            {**_host(h), "link": h.link, "running": h.running, "listening": h.listening} for h in hosts
        ],
    }


def teardown(done: Teardown) -> dict[str, Any]:
    """``sandbox.down --json``: hosts stopped, what was removed, what was kept and why."""
    return {"stopped": list(done.stopped), "removed": list(done.removed), "kept": list(done.kept)}
