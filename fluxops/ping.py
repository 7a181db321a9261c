"""Reach every host of an inventory at once: Ansible's ``ping``, over fluxops.shell."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fluxops.errors import CommandError
from fluxops.inventory import Host
from fluxops.shell import Connections


@dataclass(frozen=True)
class Reply:
    """One host's answer: its kernel line and round trip, or the error."""

    host: str
    cluster: str
    ok: bool
    detail: str
    millis: float


def _one(conns: Connections, host: Host, timeout: float) -> Reply:
    try:
        result = conns.get(host).run(["uname", "-nsrm"], timeout=timeout)
    except CommandError as exc:
        return Reply(host.name, host.cluster, False, str(exc), 0.0)
    return Reply(host.name, host.cluster, True, result.stdout.strip(), result.duration * 1000)


def ping(hosts: Iterable[Host], conns: Connections, *, timeout: float = 30.0) -> list[Reply]:
    """Run ``uname`` on every host in parallel; one Reply per host, in inventory order."""
    targets = list(hosts)
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        return list(pool.map(lambda h: _one(conns, h, timeout), targets))
