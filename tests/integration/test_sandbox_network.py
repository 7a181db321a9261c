"""The sandbox hosts' network: plain OpenSSH reaches them by name, and a host taken off the network (its
veth set down from the machine) fails alone, at once, with its own error, until it is back."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from fluxops import sandbox
from fluxops.errors import CommandError
from fluxops.ping import ping
from fluxops.sandbox import network
from fluxops.shell import Connections, RemoteShell
from tests.conftest import start_sandbox

pytestmark = pytest.mark.ssh


def test_plain_ssh_reaches_each_host_by_name(sandbox_env, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".sandbox").symlink_to(sandbox_env.state_dir)
    for host in sandbox_env.inventory.hosts:
        result = subprocess.run(
            ["ssh", "-F", ".sandbox/ssh_config", host.name, "hostname; ps -p 1 -o comm=; hostname -I"],
            cwd=checkout,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [host.name, "systemd", host.address]


def test_a_host_off_the_network_fails_alone_and_answers_again_once_back(tmp_path: Path) -> None:
    env = start_sandbox(tmp_path)
    try:
        states = {s.name: s for s in sandbox.read_state(env.state_dir)}
        n5, phx1 = env.inventory.host("n5"), env.inventory.host("phx1")
        held = RemoteShell(n5, connect_timeout=2)  # a connection opened before the host drops off
        assert held.run(["hostname"]).stdout.strip() == "n5"
        network.set_link(states["n5"].veth, up=False)
        try:
            started = time.monotonic()
            with Connections(connect_timeout=5) as conns:
                replies = ping([n5, phx1], conns, timeout=10)
            assert time.monotonic() - started < 3, "the fence route refuses at once (no connect timeout)"
            assert [(r.host, r.ok) for r in replies] == [("n5", False), ("phx1", True)]
            assert (
                f"[n5] cannot connect to n5 (root@{n5.address} port 22): No route to host"
                in replies[0].detail
            )
            assert replies[1].detail.startswith("Linux phx1")
            with pytest.raises(CommandError) as caught:
                RemoteShell(n5, connect_timeout=5).run(["true"])
            assert caught.value.host == "n5" and "No route to host" in str(caught.value)
            started = time.monotonic()
            with pytest.raises(CommandError) as lost:
                held.run(["true"], timeout=30)  # the open connection went silent: no channel opens
            assert time.monotonic() - started < 5, "given up after the connect timeout, not the command's"
            assert str(lost.value).startswith("[n5] connection lost: Timeout opening channel")
            assert RemoteShell(phx1).run(["hostname"]).stdout.strip() == "phx1"
            status = {s.name: s for s in sandbox.status(env.state_dir)}
            assert status["n5"].running and status["n5"].link == "down" and not status["n5"].listening
        finally:
            network.set_link(states["n5"].veth, up=True)
        with Connections(connect_timeout=5) as conns:
            replies = ping([n5, phx1], conns, timeout=10)
        assert [(r.host, r.ok) for r in replies] == [("n5", True), ("phx1", True)]
        assert held.run(["hostname"]).stdout.strip() == "n5"  # reconnects after the dropped connection
        held.close()
    finally:
        sandbox.down(env.state_dir)
