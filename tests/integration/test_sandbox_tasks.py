"""`invoke sandbox.up | status | down` and `invoke demo`, run as a user would, on private addresses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.sandbox import network
from tests.conftest import REPO, private_inventory, require_sandbox

pytestmark = pytest.mark.ssh


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO,
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def private_sandbox(tmp_path: Path) -> dict[str, str]:
    require_sandbox()
    state = tmp_path / "state"
    path = private_inventory(tmp_path, state)
    env = {"INVOKE_FLUXOPS_SANDBOX_INVENTORY": str(path), "INVOKE_FLUXOPS_SANDBOX_DIR": str(state)}
    yield env
    run(["sandbox.down"], env)


def test_up_status_down(private_sandbox: dict[str, str]) -> None:
    up = run(["sandbox.up"], private_sandbox)
    assert up.returncode == 0, up.stderr
    assert "up n5" in up.stdout and "up phx1" in up.stdout
    status = run(["sandbox.status"], private_sandbox)
    assert status.returncode == 0 and status.stdout.count("up ") == 2, status.stdout
    n5 = next(
        h for h in sandbox.read_state(Path(private_sandbox["INVOKE_FLUXOPS_SANDBOX_DIR"])) if h.name == "n5"
    )
    network.set_link(n5.veth, up=False)
    try:
        status = run(["sandbox.status"], private_sandbox)
    finally:
        network.set_link(n5.veth, up=True)
    assert status.returncode == 1, status.stdout
    lines = {line.split()[2]: line for line in status.stdout.splitlines()}
    assert lines["n5"].startswith("down") and f"veth {n5.veth}: down" in lines["n5"]
    assert lines["phx1"].startswith("up")
    down = run(["sandbox.down"], private_sandbox)
    assert down.returncode == 0 and "stopped n5, phx1" in down.stdout
    after = run(["sandbox.status"], private_sandbox)
    assert after.returncode == 1 and "no sandbox is running" in after.stderr


def _porcelain() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--ignored=no"],
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return done.stdout


def test_demo_runs_end_to_end_and_cleans_up(private_sandbox: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    before = _porcelain()
    result = run(["demo"], {**private_sandbox, "HOME": str(home)})
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    steps = [int(m) for m in re.findall(r"^(\d+)\. ", out, re.MULTILINE)]
    assert steps == list(range(1, 11)), steps
    # both clusters bootstrapped: each phase of each cluster reported ready, none failed
    for cluster in ("lab", "phx"):
        assert re.search(rf"^ *✔ {cluster} level 0 flux-system ready", out, re.MULTILINE), cluster
        assert not re.search(rf"^ *✗ {cluster} ", out, re.MULTILINE), out
        assert re.search(rf"│ {cluster} +│ ok +│ (\d+)/\1 ", out), out
    # infrastructure and storage on one level, after crds
    found = re.findall(r"^ *✔ lab level (\d+) (crds|infrastructure|storage) ready", out, re.MULTILINE)
    assert {name: int(level) for level, name in found} == {"crds": 1, "infrastructure": 2, "storage": 2}
    # lab's key rotated online: both keys pushed and proven, then the new one alone after the push
    assert "rotation of cluster lab finished" in out and "committed and pushed" in out
    assert out.count("phase(s) reconciled Ready") == 2, out
    # only the workspace and the sandbox's folder were written, then removed; no key was printed
    workspace = Path(re.search(r"^workspace (\S+) ", out, re.MULTILINE).group(1))
    assert not workspace.exists()
    assert not Path(private_sandbox["INVOKE_FLUXOPS_SANDBOX_DIR"]).exists()
    assert list(home.iterdir()) == [], "nothing in $HOME: no ~/.kube, no key store"
    assert _porcelain() == before
    assert "AGE-SECRET-KEY" not in out + result.stderr
    assert "Try next" in out


def test_demo_keep_leaves_hosts_and_workspace_and_its_commands_work(
    private_sandbox: dict[str, str], tmp_path: Path
) -> None:
    env = {**private_sandbox, "HOME": str(tmp_path)}
    result = run(["demo", "--keep"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    workspace = Path(re.search(r"^workspace (\S+) ", result.stdout, re.MULTILINE).group(1))
    try:
        assert (workspace / "keys" / "lab.agekey").stat().st_mode & 0o777 == 0o600
        status_line, ssh_line = re.findall(r"^   ((?:invoke status|ssh) .*)$", result.stdout, re.MULTILINE)
        status = run(status_line.split()[1:], env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("✔ ready") >= 10 and "failed" not in status.stdout
        ssh = subprocess.run(ssh_line.split(), capture_output=True, text=True, timeout=120)
        assert ssh.returncode == 0, ssh.stderr
        assert "infrastructure" in ssh.stdout and "True" in ssh.stdout
    finally:
        run(["sandbox.down"], env)
        shutil.rmtree(workspace, ignore_errors=True)


def test_ping_reaches_every_host_and_first_contact_needs_the_flag(
    private_sandbox: dict[str, str], tmp_path: Path
) -> None:
    assert run(["sandbox.up"], private_sandbox).returncode == 0
    inventory = {"INVOKE_FLUXOPS_INVENTORY": private_sandbox["INVOKE_FLUXOPS_SANDBOX_INVENTORY"]}
    known = run(["inventory.ping"], {**private_sandbox, **inventory})
    assert known.returncode == 0, known.stdout + known.stderr
    assert "Linux n5" in known.stdout and "Linux phx1" in known.stdout
    # the same hosts under a known_hosts file that has never seen them
    text = Path(inventory["INVOKE_FLUXOPS_INVENTORY"]).read_text()
    fresh_known = tmp_path / "fresh_known_hosts"
    fresh = tmp_path / "fresh.yaml"
    fresh.write_text(text.replace(str(tmp_path / "state" / "known_hosts"), str(fresh_known)))
    refused = run(["inventory.ping", "--cluster", "lab"], {"INVOKE_FLUXOPS_INVENTORY": str(fresh)})
    assert refused.returncode == 1
    assert "--accept-new-host-key" in refused.stdout and "unreachable: n5" in refused.stderr
    accepted = run(
        ["inventory.ping", "--cluster", "lab", "--accept-new-host-key"],
        {"INVOKE_FLUXOPS_INVENTORY": str(fresh)},
    )
    assert accepted.returncode == 0 and "Linux n5" in accepted.stdout
    n5 = inv.load(Path(inventory["INVOKE_FLUXOPS_INVENTORY"])).host("n5")
    assert fresh_known.read_text().startswith(f"{n5.address} ssh-ed25519 ")
    again = run(["inventory.ping", "--cluster", "lab"], {"INVOKE_FLUXOPS_INVENTORY": str(fresh)})
    assert again.returncode == 0
