"""testinfra against the sandbox hosts, over real OpenSSH with strict host key checking."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import testinfra

from fluxops import inventory as inv
from fluxops.shell import RemoteShell

pytestmark = pytest.mark.ssh


SHIPPED = [h.name for h in inv.load(Path(__file__).resolve().parents[2] / "inventory" / "sandbox.yaml").hosts]


@pytest.fixture(params=SHIPPED)
def host(request: pytest.FixtureRequest, sandbox_env):
    return testinfra.get_host(f"ssh://{request.param}", ssh_config=str(sandbox_env.ssh_config))


def test_hostname_is_the_inventory_name(host) -> None:
    assert host.check_output("hostname") == host.backend.host.name


def test_sshd_is_pid_one_of_its_own_pid_namespace(host) -> None:
    assert "sshd" in host.file("/proc/1/cmdline").content_string


def test_file_written_over_ssh_stays_inside_the_host(sandbox_env, host) -> None:
    name = host.backend.host.name
    path = f"/root/written-over-ssh-{uuid.uuid4().hex}"
    RemoteShell(sandbox_env.inventory.host(name)).run(["sh", "-c", 'echo "$1" > "$2"', "sh", name, path])
    written = host.file(path)
    assert written.exists and written.content_string == f"{name}\n"
    assert not Path(path).exists()
    upper = sandbox_env.state_dir / "hosts" / name / "upper"
    assert (upper / path.lstrip("/")).read_text() == f"{name}\n"
    other = next(n for n in SHIPPED if n != name)
    assert not (sandbox_env.state_dir / "hosts" / other / "upper" / path.lstrip("/")).exists()
