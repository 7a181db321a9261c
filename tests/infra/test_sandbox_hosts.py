"""testinfra against the sandbox hosts, over real OpenSSH with strict host key checking: each host boots
like a node (systemd as PID 1, journald, its own address and network namespace)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import testinfra

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.shell import RemoteShell

pytestmark = pytest.mark.ssh


SHIPPED = [h.name for h in inv.load(Path(__file__).resolve().parents[2] / "inventory" / "sandbox.yaml").hosts]


@pytest.fixture(params=SHIPPED)
def host(request: pytest.FixtureRequest, sandbox_env):
    return testinfra.get_host(f"ssh://{request.param}", ssh_config=str(sandbox_env.ssh_config))


def _ipv4(text: str) -> dict[str, str]:
    """Address -> interface, from `ip -j -4 addr` output."""
    return {i["local"]: link["ifname"] for link in json.loads(text) for i in link.get("addr_info", [])}


def _connect(host, address: str) -> str:
    """What bash says when the host opens a TCP connection to ``address`` port 9 (discard)."""
    result = host.run("timeout 2 bash -c %s", f"exec 3<>/dev/tcp/{address}/9")
    assert result.rc != 0
    return result.stderr


def test_hostname_is_the_inventory_name(host) -> None:
    assert host.check_output("hostname") == host.backend.host.name


def test_pid_one_is_systemd_and_the_system_is_running(host) -> None:
    assert host.check_output("ps -p 1 -o comm=") == "systemd"
    assert host.check_output("systemctl is-system-running") == "running"
    assert host.service("ssh").is_running and host.service("systemd-networkd").is_running
    sshd = host.process.filter(comm="sshd")
    assert sshd and all(p.pid != 1 for p in sshd)


def test_the_address_is_its_own_and_differs_from_the_other_hosts(sandbox_env, host) -> None:
    name = host.backend.host.name
    mine = sandbox_env.inventory.host(name).address
    other = next(h.address for h in sandbox_env.inventory.hosts if h.name != name)
    inside = _ipv4(host.check_output("ip -j -4 addr show"))
    assert inside == {"127.0.0.1": "lo", mine: "host0"}
    assert mine != other and other not in inside
    machine = _ipv4(subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True).stdout)
    assert mine not in machine, "the host's address lives in its own network namespace"
    assert host.check_output("cat /proc/sys/kernel/hostname") == name
    # the host reaches the machine's end of its own link, and nothing else
    peer = next(s for s in sandbox.read_state(sandbox_env.state_dir) if s.name == name)
    route = f"{peer.network} dev host0 proto kernel scope link src {mine}"
    assert host.check_output("ip -4 route show").strip() == route
    assert "Connection refused" in _connect(host, peer.machine_address), "the machine answers (port 9: RST)"
    assert "Network is unreachable" in _connect(host, other)
    assert "Network is unreachable" in _connect(host, "192.0.2.1")


def test_a_unit_starts_and_stops(host) -> None:
    unit = f"t{uuid.uuid4().hex[:8]}"
    host.run_expect([0], "systemd-run --unit=%s sleep 60", unit)
    try:
        assert host.check_output("systemctl is-active %s", unit) == "active"
        assert host.check_output("systemctl show -P MainPID %s", unit) != "0"
    finally:
        host.run_expect([0], "systemctl stop %s", unit)
    assert host.run("systemctl is-active %s", unit).stdout.strip() == "inactive"


def test_stopping_a_unit_on_one_host_leaves_the_same_unit_on_the_other_running(sandbox_env) -> None:
    first, second = (
        testinfra.get_host(f"ssh://{name}", ssh_config=str(sandbox_env.ssh_config)) for name in SHIPPED[:2]
    )
    unit = f"t{uuid.uuid4().hex[:8]}"
    for host in (first, second):
        host.run_expect([0], "systemd-run --unit=%s sleep 60", unit)
    try:
        first.run_expect([0], "systemctl stop %s", unit)
        assert first.run("systemctl is-active %s", unit).stdout.strip() == "inactive"
        assert second.check_output("systemctl is-active %s", unit) == "active", (
            "each host has its own cgroups"
        )
    finally:
        second.run_expect([0], "systemctl stop %s", unit)


def test_journalctl_shows_a_units_output(host) -> None:
    unit = f"t{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex
    host.run_expect([0], "systemd-run --unit=%s echo %s", unit, token)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if token in host.run("journalctl -u %s --no-pager -o cat", unit).stdout:
            break
        time.sleep(0.1)
    assert token in host.check_output("journalctl -u %s --no-pager -o cat", unit)
    assert "Accepted publickey for root" in host.check_output("journalctl -u ssh --no-pager -o cat")


def test_network_sysctls_are_the_hosts_own(host) -> None:
    machine_before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    try:
        host.run_expect([0], "sysctl -w net.ipv4.ip_forward=1")
        assert host.check_output("sysctl -n net.ipv4.ip_forward") == "1"
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == machine_before
    finally:
        host.run_expect([0], "sysctl -w net.ipv4.ip_forward=0")
    # a kernel-wide sysctl is the machine's: readable, not writable (docs/sandbox.md)
    swappiness = host.check_output("sysctl -n vm.swappiness")
    assert swappiness == Path("/proc/sys/vm/swappiness").read_text().strip()
    refused = host.run("sysctl -w vm.swappiness=%s", swappiness)
    assert refused.rc != 0 and 'permission denied on key "vm.swappiness"' in refused.stderr


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
