"""sandbox.up / status / down: exactly the processes started, nothing left behind, loopback only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.errors import SandboxError
from tests.conftest import REPO, free_port, start_sandbox, write_sandbox_inventory

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
        assert {h.name for h in state} == {"n5", "phx1"}
        assert all(s.running and s.listening for s in sandbox.status(env.state_dir))
        assert _processes_rooted_in(tmp_path), "sshd should run chrooted under the state dir"
        assert _mounts_under(tmp_path), "the overlay should be mounted in the host's namespace"
        with pytest.raises(SandboxError, match="already runs"):
            sandbox.up(env.inventory, env.state_dir)
    finally:
        result = sandbox.down(env.state_dir)
    assert sorted(result.stopped) == ["n5", "phx1"]
    assert result.kept == []
    for host in state:
        assert not Path(f"/proc/{host.sshd_pid}").exists() or not sandbox._alive(
            host.sshd_pid, host.sshd_start
        )
        assert not sandbox._alive(host.launcher_pid)
    assert _processes_rooted_in(tmp_path) == []
    assert _mounts_under(tmp_path) == []
    assert not env.state_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sandbox.yaml"], "down leaves nothing behind"
    assert sandbox.status(env.state_dir) == []
    assert sandbox.down(env.state_dir) == sandbox.Teardown(stopped=[], removed=[], kept=[])


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


def _tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def _invoke(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO,
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_down_on_a_folder_up_did_not_create_deletes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine\n")
    (home / "hosts" / "n5").mkdir(parents=True)
    (home / "hosts" / "n5" / "keep").write_text("also mine\n")
    before = _tree(home)
    result = _invoke(["sandbox.down"], {"INVOKE_FLUXOPS_SANDBOX_DIR": str(home)})
    assert result.returncode == 0, result.stderr
    assert "no sandbox was running" in result.stdout
    assert _tree(home) == before
    assert sandbox.down(home) == sandbox.Teardown(stopped=[], removed=[], kept=[])
    assert _tree(home) == before


def test_a_state_file_without_marker_deletes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    dead = {
        "name": "n5",
        "cluster": "lab",
        "address": "127.0.0.2",
        "port": 2222,
        "launcher_pid": 0,
        "sshd_pid": 0,
        "sshd_start": "",
        "directory": str(folder),
    }
    (folder / sandbox.STATE_FILE).write_text(json.dumps([dead]))
    before = _tree(folder)
    result = _invoke(["sandbox.down"], {"INVOKE_FLUXOPS_SANDBOX_DIR": str(folder)})
    assert result.returncode == 0, result.stderr
    assert "deleted nothing" in result.stdout and sandbox.MARKER_FILE in result.stdout
    assert _tree(folder) == before


def test_down_without_the_marker_stops_the_hosts_but_deletes_nothing(tmp_path: Path) -> None:
    env = start_sandbox(tmp_path)
    state = sandbox.read_state(env.state_dir)
    (env.state_dir / sandbox.MARKER_FILE).unlink()
    before = set(_tree(env.state_dir))  # sshd logs grow as the hosts stop: compare the names
    result = sandbox.down(env.state_dir)
    assert sorted(result.stopped) == ["n5", "phx1"]
    assert not any(sandbox._alive(h.sshd_pid, h.sshd_start) for h in state)
    assert result.removed == [] and "deleted nothing" in result.kept[0]
    assert set(_tree(env.state_dir)) == before
    shutil.rmtree(env.state_dir)


def test_up_in_an_existing_folder_and_down_keep_the_folder_and_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    env = start_sandbox(tmp_path)
    assert env.state_dir == folder
    assert (folder / sandbox.MARKER_FILE).read_text().strip() == sandbox.read_record(folder).id
    result = sandbox.down(folder)
    assert sorted(result.stopped) == ["n5", "phx1"]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "mine\n"


def test_up_refuses_to_overwrite_a_host_folder_it_did_not_create(tmp_path: Path) -> None:
    shipped = inv.load(REPO / "inventory" / "sandbox.yaml")
    folder = tmp_path / "state"
    (folder / "hosts" / "phx1").mkdir(parents=True)
    (folder / "hosts" / "phx1" / "data").write_text("mine\n")
    port = free_port([h.address for h in shipped.hosts])
    inventory = inv.load(write_sandbox_inventory(tmp_path / "sandbox.yaml", folder, port))
    with pytest.raises(SandboxError, match=r"hosts/phx1 exists and sandbox.up did not create it"):
        sandbox.up(inventory, folder)
    assert _tree(folder) == {"hosts/phx1/data": "mine\n"}


def test_up_after_a_crashed_sandbox_replaces_what_the_old_one_created(tmp_path: Path) -> None:
    env = start_sandbox(tmp_path)
    old = sandbox.read_record(env.state_dir)
    for host in old.hosts:
        os.kill(host.sshd_pid, signal.SIGKILL)
        assert sandbox._wait_gone(host.sshd_pid, host.sshd_start, 5.0)
    try:
        sandbox.up(env.inventory, env.state_dir)
        new = sandbox.read_record(env.state_dir)
        assert new.id != old.id
        assert all(s.running and s.listening for s in sandbox.status(env.state_dir))
    finally:
        result = sandbox.down(env.state_dir)
    assert sorted(result.stopped) == ["n5", "phx1"]
    assert not env.state_dir.exists()
