"""sandbox.up / status / down: exactly the containers, veths, routes and files up created, nothing left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.errors import SandboxError
from fluxops.sandbox import container, network, processes
from tests.conftest import (
    REAL_INVENTORY,
    REPO,
    SANDBOX_SUBNET,
    private_inventory,
    require_sandbox,
    sandbox_up,
    start_sandbox,
    write_sandbox_inventory,
)

pytestmark = pytest.mark.ssh


def _mounts_under(path: Path) -> list[str]:
    """Mount lines naming ``path`` in any process's mount namespace (the hosts' own included)."""
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


def _pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def _processes_in(namespaces: set[str]) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") in namespaces:
                    found.append(int(pid))
            except OSError:
                continue
    return found


def _fence_routes() -> list[str]:
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show"], capture_output=True).stdout)
    return sorted(r["dst"] for r in routes if r.get("type") == "unreachable")


def _links() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


def _assert_gone(states: list[sandbox.HostState], namespaces: set[str], folder: Path) -> None:
    for host in states:
        assert not any(Path(c).exists() for c in host.cgroups), host.cgroups
        assert not processes.alive(host.nspawn_pid, host.nspawn_start), host.name
        assert not processes.alive(host.init_pid, host.init_start), host.name
        assert not network.interface_exists(host.veth), host.veth
        assert not network.fence_exists(IPv4Network(host.network)), host.network
    assert _processes_in(namespaces) == [], "a process of a host outlived down"
    assert _mounts_under(folder) == []


def test_up_then_down_leaves_nothing_and_a_second_up_works(tmp_path: Path) -> None:
    links_before = _links()
    env = start_sandbox(tmp_path)
    states = sandbox.read_state(env.state_dir)
    try:
        assert {h.name for h in states} == {"n5", "phx1"}
        assert all(s.running and s.listening and s.link == "up" for s in sandbox.status(env.state_dir))
        for host in states:
            assert processes.alive(host.nspawn_pid, host.nspawn_start)
            assert processes.namespace_pid(host.init_pid) == 1
            assert network.is_veth(host.veth)
            assert network.fence_exists(IPv4Network(host.network))
            assert Path(host.mount_point).is_relative_to(env.state_dir)
            assert host.cgroups and all(Path(c, "payload").is_dir() for c in host.cgroups)
            init_scope = Path(host.cgroups[0], "payload", "init.scope", "cgroup.procs")
            assert str(host.init_pid) in init_scope.read_text().split(), "each host has a cgroup of its own"
        assert len({h.machine for h in states}) == len({h.veth for h in states}) == 2
        namespaces = {_pid_namespace(h.init_pid) for h in states}
        assert len(namespaces) == 2 and _pid_namespace(os.getpid()) not in namespaces
        assert len(_processes_in(namespaces)) >= 2 * 4, "systemd, journald, networkd and sshd per host"
        assert _mounts_under(tmp_path), "each host's overlay is mounted in its own mount namespace"
        with pytest.raises(SandboxError, match="already runs"):
            sandbox_up(env.inventory, env.state_dir)
    finally:
        result = sandbox.down(env.state_dir)
    assert sorted(result.stopped) == ["n5", "phx1"]
    assert result.kept == []
    assert {f"route unreachable {h.network} metric 4242" for h in states} <= set(result.removed)
    _assert_gone(states, namespaces, tmp_path)
    assert _links() == links_before
    assert not env.state_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sandbox.yaml"], "down leaves nothing behind"
    assert sandbox.status(env.state_dir) == []
    assert sandbox.down(env.state_dir) == sandbox.Teardown(stopped=[], removed=[], kept=[])
    # at once, the same hosts on the same addresses again
    again = sandbox_up(env.inventory, env.state_dir)
    try:
        again_namespaces = {_pid_namespace(h.init_pid) for h in again}
        assert [h.address for h in again] == [h.address for h in states]
        assert {h.machine for h in again}.isdisjoint({h.machine for h in states}), "machine names are per run"
        assert all(s.running and s.listening for s in sandbox.status(env.state_dir))
    finally:
        second = sandbox.down(env.state_dir)
    assert sorted(second.stopped) == ["n5", "phx1"]
    _assert_gone(again, again_namespaces, tmp_path)
    assert _links() == links_before and not env.state_dir.exists()


def _nothing_created(tmp_path: Path, before: tuple[list[str], list[str]]) -> None:
    assert not (tmp_path / "state").exists()
    assert (_links(), _fence_routes()) == before


def test_real_inventory_is_refused_and_nothing_starts(tmp_path: Path) -> None:
    require_sandbox()
    before = (_links(), _fence_routes())
    real = inv.load(REAL_INVENTORY)
    with pytest.raises(
        SandboxError, match=r"host n5 has address '192\.168\.8\.5'.*inside the sandbox subnet"
    ):
        sandbox_up(real, tmp_path / "state")
    _nothing_created(tmp_path, before)


def test_a_subnet_holding_a_real_host_is_refused_and_nothing_starts(tmp_path: Path) -> None:
    require_sandbox()
    before = (_links(), _fence_routes())
    path = write_sandbox_inventory(tmp_path / "inv.yaml", tmp_path / "state", ["192.168.8.2", "192.168.8.6"])
    inventory = inv.load(path)
    for subnet, named in (("192.168.8.0/24", r"n5 \(192\.168\.8\.5\)"), ("192.168.0.0/16", "n5")):
        with pytest.raises(SandboxError, match=rf"subnet {subnet} holds real hosts of .*hosts.yaml: {named}"):
            sandbox.up(inventory, tmp_path / "state", subnet=subnet, real_inventory=REAL_INVENTORY)
    with pytest.raises(SandboxError, match=r"85\.31\.234\.0/24 is not inside a private range"):
        sandbox.up(inventory, tmp_path / "state", subnet="85.31.234.0/24", real_inventory=REAL_INVENTORY)
    _nothing_created(tmp_path, before)


def test_subnet_setting_overlapping_hosts_yaml_stops_the_task(tmp_path: Path) -> None:
    require_sandbox()
    before = (_links(), _fence_routes())
    state = tmp_path / "state"
    path = write_sandbox_inventory(tmp_path / "inv.yaml", state, ["192.168.8.2", "192.168.8.6"])
    env = {
        "INVOKE_FLUXOPS_SANDBOX_SUBNET": "192.168.8.0/24",
        "INVOKE_FLUXOPS_SANDBOX_INVENTORY": str(path),
        "INVOKE_FLUXOPS_SANDBOX_DIR": str(state),
    }
    result = _invoke(["sandbox.up"], env)
    assert result.returncode == 1
    assert (
        "sandbox subnet 192.168.8.0/24 holds real hosts of" in result.stderr
        and "n5 (192.168.8.5)" in result.stderr
    )
    assert "Traceback" not in result.stderr
    _nothing_created(tmp_path, before)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("localhost", r"host n5 has address 'localhost'; sandbox hosts must be literal IPv4"),
        ("127.0.0.2", r"host n5 has address '127\.0\.0\.2', a loopback address"),
        ("10.251.0.2", r"host n5 has address '10\.251\.0\.2'; sandbox hosts must be literal IPv4"),
        ("10.250.0.3", r"10\.250\.0\.3 is the network or broadcast address of 10\.250\.0\.0/30"),
    ],
)
def test_addresses_outside_the_subnet_are_refused(tmp_path: Path, address: str, message: str) -> None:
    require_sandbox()
    path = tmp_path / "inv.yaml"
    path.write_text(
        "all:\n  vars: {ansible_ssh_private_key_file: k, fluxops_known_hosts_file: kh}\n"
        f"  children:\n    lab:\n      hosts:\n        n5: {{ansible_host: {address}}}\n"
    )
    with pytest.raises(SandboxError, match=message):
        sandbox_up(inv.load(path), tmp_path / "state")
    assert not (tmp_path / "state").exists()


def test_two_hosts_in_one_30_are_refused(tmp_path: Path) -> None:
    require_sandbox()
    path = write_sandbox_inventory(tmp_path / "inv.yaml", tmp_path / "state", ["10.250.0.2", "10.250.0.1"])
    with pytest.raises(SandboxError, match=r"hosts n5 and phx1 share 10\.250\.0\.0/30"):
        sandbox_up(inv.load(path), tmp_path / "state")


def test_addresses_in_use_are_reported(sandbox_env, tmp_path: Path) -> None:
    before = (_links(), _fence_routes())
    with pytest.raises(SandboxError, match=r"already in use on this machine.*route unreachable"):
        sandbox_up(sandbox_env.inventory, tmp_path / "other-state")
    assert not (tmp_path / "other-state").exists()
    assert (_links(), _fence_routes()) == before


def _tree(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): p.read_text(errors="replace")
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


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


def _dead_record(folder: Path) -> dict[str, object]:
    host = {
        "name": "n5",
        "cluster": "lab",
        "address": "10.250.0.2",
        "port": 22,
        "machine": "fx-000000-0",
        "veth": "ve-fx-000000-0",
        "machine_address": "10.250.0.1",
        "network": "10.250.0.0/30",
        "directory": str(folder / "hosts" / "n5"),
        "mount_point": str(folder / "hosts" / "n5" / "root"),
        "nspawn_pid": 0,
        "nspawn_start": "",
    }
    return {"id": "0" * 32, "state_dirs": [], "created": [], "host_dirs": [], "fences": [], "hosts": [host]}


def test_a_state_file_without_marker_deletes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    record = _dead_record(folder)
    record["created"] = [str(folder / "notes.txt")]
    (folder / sandbox.STATE_FILE).write_text(json.dumps(record))
    before = _tree(folder)
    result = _invoke(["sandbox.down"], {"INVOKE_FLUXOPS_SANDBOX_DIR": str(folder)})
    assert result.returncode == 0, result.stderr
    assert "deleted nothing" in result.stdout and sandbox.MARKER_FILE in result.stdout
    assert _tree(folder) == before


def test_a_state_file_of_the_chroot_sandbox_is_named_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    old = [{"name": "n5", "cluster": "lab", "address": "127.0.0.2", "port": 2222, "launcher_pid": 0}]
    old[0] |= {"sshd_pid": 4242424, "sshd_start": "", "directory": str(folder)}
    (folder / sandbox.STATE_FILE).write_text(json.dumps(old))
    before = _tree(folder)
    result = _invoke(["sandbox.down"], {"INVOKE_FLUXOPS_SANDBOX_DIR": str(folder)})
    assert result.returncode == 1
    assert "written by an older fluxops" in result.stderr and "4242424" in result.stderr
    assert _tree(folder) == before


def test_down_without_the_marker_stops_the_hosts_but_deletes_nothing(tmp_path: Path) -> None:
    env = start_sandbox(tmp_path)
    states = sandbox.read_state(env.state_dir)
    (env.state_dir / sandbox.MARKER_FILE).unlink()
    before = set(_tree(env.state_dir))  # boot logs grow as the hosts stop: compare the names
    try:
        result = sandbox.down(env.state_dir)
        assert sorted(result.stopped) == ["n5", "phx1"]
        assert not any(container.running(h) for h in states)
        assert result.removed == [] and "deleted nothing" in result.kept[0]
        routes = {
            f"kept route unreachable {h.network} metric 4242 (named by that state.json)" for h in states
        }
        cgroups = {f"kept cgroup {c} (named by that state.json)" for h in states for c in h.cgroups}
        assert set(result.kept[1:]) == routes | cgroups and len(cgroups) >= 2
        assert set(_tree(env.state_dir)) == before
    finally:
        for host in states:
            network.remove_fence(IPv4Network(host.network))
            container.remove_cgroups(host)
            container.remove_propagate_dir(host)
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
    require_sandbox()
    folder = tmp_path / "state"
    (folder / "hosts" / "phx1").mkdir(parents=True)
    (folder / "hosts" / "phx1" / "data").write_text("mine\n")
    before = _fence_routes()
    inventory = inv.load(private_inventory(tmp_path, folder))
    with pytest.raises(SandboxError, match=r"hosts/phx1 exists and sandbox.up did not create it"):
        sandbox_up(inventory, folder)
    assert _tree(folder) == {"hosts/phx1/data": "mine\n"}
    assert _fence_routes() == before


def test_up_after_a_crashed_sandbox_replaces_what_the_old_one_created(tmp_path: Path) -> None:
    env = start_sandbox(tmp_path)
    old = sandbox.read_record(env.state_dir)
    for host in old.hosts:  # the whole host at once, as after a crash of the machine's side
        os.kill(host.init_pid, signal.SIGKILL)
        os.kill(host.nspawn_pid, signal.SIGKILL)
    assert processes.wait_gone([(h.nspawn_pid, h.nspawn_start) for h in old.hosts], 10.0) == []
    assert processes.wait_gone([(h.init_pid, h.init_start) for h in old.hosts], 10.0) == []
    try:
        sandbox_up(env.inventory, env.state_dir)
        new = sandbox.read_record(env.state_dir)
        assert new.id != old.id
        assert all(s.running and s.listening for s in sandbox.status(env.state_dir))
    finally:
        result = sandbox.down(env.state_dir)
    assert sorted(result.stopped) == ["n5", "phx1"]
    assert not env.state_dir.exists()
    _assert_gone(old.hosts + new.hosts, set(), tmp_path)


def test_down_stops_a_host_whose_nspawn_was_killed(tmp_path: Path) -> None:
    env = start_sandbox(tmp_path)
    states = sandbox.read_state(env.state_dir)
    victim = states[0]
    os.kill(victim.nspawn_pid, signal.SIGKILL)  # its container keeps running, orphaned
    assert processes.wait_gone([(victim.nspawn_pid, victim.nspawn_start)], 10.0) == []
    assert processes.alive(victim.init_pid, victim.init_start)
    status = {s.name: s for s in sandbox.status(env.state_dir)}
    assert status[victim.name].running
    result = sandbox.down(env.state_dir)
    assert sorted(result.stopped) == ["n5", "phx1"]
    _assert_gone(states, set(), tmp_path)
    assert not env.state_dir.exists()


def test_subnet_default_matches_the_configured_one() -> None:
    assert str(SANDBOX_SUBNET) == "10.250.0.0/24" == str(sandbox.DEFAULT_SUBNET)
