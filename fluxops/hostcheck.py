"""A quick health check of a host through testinfra over real OpenSSH (used by the demo).

testinfra comes with the ``test`` extra, not with a plain install, so it is imported only when a
check runs; without it the checks say which package to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fluxops.errors import FluxopsError
from fluxops.shell import local

INSTALL_HINT = (
    "the host checks need testinfra, which a plain install leaves out: install the package "
    "pytest-testinfra (pip install pytest-testinfra), or fluxops with its test extra "
    "(pip install -e '.[test]'; scripts/setup.sh does that)"
)


class MissingTestinfra(FluxopsError):
    """testinfra is not installed; says which package to install."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


def require_testinfra() -> None:
    """Raise ``MissingTestinfra`` unless testinfra can be imported (without importing it)."""
    if importlib.util.find_spec("testinfra") is None:
        raise MissingTestinfra()


def _testinfra() -> ModuleType:
    try:
        return importlib.import_module("testinfra")
    except ImportError as exc:
        raise MissingTestinfra() from exc


@dataclass(frozen=True)
class Check:
    """One check on one host and what it found."""

    host: str
    name: str
    ok: bool
    detail: str


def _ipv4_addresses(text: str) -> set[str]:
    """The IPv4 addresses in `ip -j -4 addr` output."""
    return {info["local"] for link in json.loads(text or "[]") for info in link.get("addr_info", [])}


def check_host(name: str, ssh_config: Path, address: str) -> list[Check]:
    """Hostname, systemd as PID 1, sshd, the host's own address, a unit started and stopped, OS, writes."""
    host = _testinfra().get_host(f"ssh://{name}", ssh_config=str(ssh_config))
    checks = []
    hostname = host.check_output("hostname")
    checks.append(Check(name, "hostname", hostname == name, f"hostname is {hostname!r}"))
    init = host.check_output("ps -p 1 -o comm=")
    checks.append(Check(name, "pid 1 is systemd", init == "systemd", f"PID 1 is {init!r}"))
    ssh = host.service("ssh")
    sshd = host.process.filter(comm="sshd")
    detail = f"ssh.service {'active' if ssh.is_running else 'not active'}, {len(sshd)} sshd process(es)"
    checks.append(Check(name, "sshd running", ssh.is_running and bool(sshd), detail))
    inside = _ipv4_addresses(host.check_output("ip -j -4 addr show"))
    here = _ipv4_addresses(local().run(["ip", "-j", "-4", "addr", "show"]).stdout)
    own = address in inside and address not in here
    detail = f"{address} on the host: {address in inside}, on this machine: {address in here}"
    checks.append(Check(name, "own address", own, detail))
    checks.append(_unit_check(host, name))
    os_release = host.file("/etc/os-release")
    checks.append(Check(name, "os-release", os_release.exists, host.system_info.distribution or "?"))
    path = f"/root/.fluxops-check-{uuid.uuid4().hex}"
    host.run_expect([0], "echo %s > %s", name, path)
    inside_file = host.file(path).exists and host.file(path).content_string.strip() == name
    outside = Path(path).exists()
    detail = f"test file on the host: {inside_file}, on this machine: {outside}"
    checks.append(Check(name, "writes stay inside", inside_file and not outside, detail))
    host.run_expect([0], "rm -f %s", path)
    return checks


def _unit_check(host: Any, name: str) -> Check:
    """A transient unit started with systemd-run is active, and inactive once stopped."""
    unit = f"fluxops-check-{uuid.uuid4().hex[:12]}"
    host.run_expect([0], "systemd-run --quiet --unit=%s sleep 60", unit)
    started = host.run("systemctl is-active %s", unit).stdout.strip()
    host.run_expect([0], "systemctl stop %s", unit)
    stopped = host.run("systemctl is-active %s", unit).stdout.strip()
    ok = started == "active" and stopped != "active"
    return Check(name, "unit start/stop", ok, f"{unit}.service: {started}, then {stopped}")
