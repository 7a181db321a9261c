"""sandbox.up / status / down: exactly the processes started, nothing left behind, loopback only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.errors import SandboxError
from tests.conftest import REPO, start_sandbox

pytestmark = pytest.mark.ssh


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            text = Path(f"/proc/{pid}/mounts").read_text()
        except OSError:
            continue
        found += [ln for ln in text.splitlines() if prefix in ln]
    return found


def _processes_rooted_in(path: Path) -> list[int]:
    prefix = str(path.resolve())
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink(f"/proc/{pid}/root").startswith(prefix):
                    found.append(int(pid))
            except OSError:
                continue
    return found


def test_up_then_down_leaves_no_process_or_mount(tmp_path: Path) -> None:
    env = start_sandbox(tmp_path)
    state = sandbox.read_state(env.state_dir)
    try:
        assert {h.name for h in state} == {"n5", "phx"}
        assert all(s.running and s.listening for s in sandbox.status(env.state_dir))
        assert _processes_rooted_in(tmp_path), "sshd should run chrooted under the state dir"
        assert _mounts_under(tmp_path), "the overlay should be mounted in the host's namespace"
        with pytest.raises(SandboxError, match="already runs"):
            sandbox.up(env.inventory, env.state_dir)
    finally:
        stopped = sandbox.down(env.state_dir)
    assert sorted(stopped) == ["n5", "phx"]
    for host in state:
        assert not Path(f"/proc/{host.sshd_pid}").exists() or not sandbox._alive(
            host.sshd_pid, host.sshd_start
        )
        assert not sandbox._alive(host.launcher_pid)
    assert _processes_rooted_in(tmp_path) == []
    assert _mounts_under(tmp_path) == []
    assert not env.state_dir.exists()
    assert sandbox.status(env.state_dir) == []
    assert sandbox.down(env.state_dir) == []


def test_real_inventory_is_refused_and_nothing_starts(tmp_path: Path) -> None:
    real = inv.load(REPO / "inventory" / "hosts.yaml")
    with pytest.raises(SandboxError, match="must be literal 127"):
        sandbox.up(real, tmp_path / "state")
    assert not (tmp_path / "state").exists()


def test_hostname_is_refused_even_if_it_resolves_to_loopback(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "all:\n  vars: {ansible_ssh_private_key_file: k, fluxops_known_hosts_file: kh}\n"
        "  children:\n    lab:\n      hosts:\n        n5: {ansible_host: localhost, ansible_port: 2222}\n"
    )
    with pytest.raises(SandboxError, match="host n5 has address 'localhost'"):
        sandbox.up(inv.load(path), tmp_path / "state")


def test_port_in_use_is_reported(sandbox_env, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="already in use"):
        sandbox.up(sandbox_env.inventory, tmp_path / "other-state")
