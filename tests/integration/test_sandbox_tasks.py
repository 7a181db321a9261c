"""`invoke sandbox.up | status | down` and `invoke demo`, run as a user would, on a private port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxops import inventory as inv
from tests.conftest import REPO, free_port, require_sandbox, write_sandbox_inventory

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
    shipped = inv.load(REPO / "inventory" / "sandbox.yaml")
    state = tmp_path / "state"
    port = free_port([h.address for h in shipped.hosts])
    path = write_sandbox_inventory(tmp_path / "sandbox.yaml", state, port)
    env = {"INVOKE_FLUXOPS_SANDBOX_INVENTORY": str(path), "INVOKE_FLUXOPS_SANDBOX_DIR": str(state)}
    yield env
    run(["sandbox.down"], env)


def test_up_status_down(private_sandbox: dict[str, str]) -> None:
    up = run(["sandbox.up"], private_sandbox)
    assert up.returncode == 0, up.stderr
    assert "up n5" in up.stdout and "up phx1" in up.stdout
    status = run(["sandbox.status"], private_sandbox)
    assert status.returncode == 0 and status.stdout.count("up ") == 2, status.stdout
    down = run(["sandbox.down"], private_sandbox)
    assert down.returncode == 0 and "stopped n5, phx1" in down.stdout
    after = run(["sandbox.status"], private_sandbox)
    assert after.returncode == 1 and "no sandbox is running" in after.stderr


def test_demo_runs_end_to_end_and_cleans_up(private_sandbox: dict[str, str]) -> None:
    result = run(["demo"], private_sandbox)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert result.stdout.count("ok ") >= 8
    assert "sandbox hosts down" in result.stdout
    assert not Path(private_sandbox["INVOKE_FLUXOPS_SANDBOX_DIR"]).exists()


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
    assert fresh_known.read_text().startswith("[127.0.0.2]:")
    again = run(["inventory.ping", "--cluster", "lab"], {"INVOKE_FLUXOPS_INVENTORY": str(fresh)})
    assert again.returncode == 0
