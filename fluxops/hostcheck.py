"""A quick health check of a host through testinfra over real OpenSSH (used by the demo).

testinfra comes with the ``test`` extra, not with a plain install, so it is imported only when a
check runs; without it the checks say which package to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from fluxops.errors import FluxopsError

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


def check_host(name: str, ssh_config: Path) -> list[Check]:
    """Hostname, sshd, OS and a write that must stay inside the host."""
    host = _testinfra().get_host(f"ssh://{name}", ssh_config=str(ssh_config))
    checks = []
    hostname = host.check_output("hostname")
    checks.append(Check(name, "hostname", hostname == name, f"hostname is {hostname!r}"))
    sshd = host.process.filter(comm="sshd")
    checks.append(Check(name, "sshd running", bool(sshd), f"{len(sshd)} sshd process(es)"))
    os_release = host.file("/etc/os-release")
    checks.append(Check(name, "os-release", os_release.exists, host.system_info.distribution or "?"))
    path = f"/root/.fluxops-check-{uuid.uuid4().hex}"
    host.run_expect([0], "echo %s > %s", name, path)
    inside = host.file(path).exists and host.file(path).content_string.strip() == name
    outside = Path(path).exists()
    detail = f"test file on the host: {inside}, on this machine: {outside}"
    checks.append(Check(name, "writes stay inside", inside and not outside, detail))
    host.run_expect([0], "rm -f %s", path)
    return checks
