"""``--json`` of the tasks that need sandbox hosts - sandbox.up, sandbox.status, sandbox.down and
node.verify - run as a user runs them, through invoke and fluxops, against docs/cli.md's shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fluxops import inventory as inv
from fluxops import sandbox
from tests.conftest import REPO, private_inventory, require_sandbox
from tests.unit.cli_testing import schemas

pytestmark = pytest.mark.ssh

PROGRAMS = ("invoke", "fluxops")


def run(program: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", program, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def documented(task: str, output: str) -> Any:
    data = json.loads(output)
    jsonschema.validate(data, schemas()[task], cls=jsonschema.Draft202012Validator)
    return data


@pytest.fixture
def private_sandbox(tmp_path: Path) -> Iterator[dict[str, str]]:
    require_sandbox()
    state = tmp_path / "state"
    path = private_inventory(tmp_path, state)
    env = {"INVOKE_FLUXOPS_SANDBOX_INVENTORY": str(path), "INVOKE_FLUXOPS_SANDBOX_DIR": str(state)}
    yield env
    run("invoke", ["sandbox.down"], env)


@pytest.mark.parametrize("program", PROGRAMS)
def test_up_status_down_as_json(program: str, private_sandbox: dict[str, str]) -> None:
    up = run(program, ["sandbox.up", "--json"], private_sandbox)
    assert up.returncode == 0, up.stderr
    started = documented("sandbox.up", up.stdout)
    state_dir = Path(private_sandbox["INVOKE_FLUXOPS_SANDBOX_DIR"])
    assert started["ok"] and started["ssh_config"] == str(sandbox.ssh_config_path(state_dir.absolute()))
    recorded = {h.name: h for h in sandbox.read_state(state_dir)}
    assert [h["host"] for h in started["hosts"]] == ["n5", "phx1"] == sorted(recorded)
    for host in started["hosts"]:
        assert (host["address"], host["veth"], host["nspawn_pid"]) == (
            recorded[host["host"]].address,
            recorded[host["host"]].veth,
            recorded[host["host"]].nspawn_pid,
        )
    assert up.stderr.strip(), "progress lines go to stderr"
    status = run(program, ["sandbox.status", "--json"], private_sandbox)
    assert status.returncode == 0, status.stderr
    shown = documented("sandbox.status", status.stdout)
    assert shown["ok"] and [h["host"] for h in shown["hosts"]] == ["n5", "phx1"]
    down = run(program, ["sandbox.down", "--json"], private_sandbox)
    assert down.returncode == 0, down.stderr
    torn = documented("sandbox.down", down.stdout)
    assert torn["stopped"] == ["n5", "phx1"] and torn["removed"]
    again = run(program, ["sandbox.down", "--json"], private_sandbox)
    assert documented("sandbox.down", again.stdout) == {"stopped": [], "removed": [], "kept": []}


@pytest.mark.parametrize("program", PROGRAMS)
def test_node_verify_as_json_on_a_host_that_is_no_node_yet(
    program: str, private_sandbox: dict[str, str]
) -> None:
    assert run("invoke", ["sandbox.up"], private_sandbox).returncode == 0
    inventory = private_sandbox["INVOKE_FLUXOPS_SANDBOX_INVENTORY"]
    host = inv.load(Path(inventory)).hosts[0].name
    verified = run(
        program, ["node.verify", "--host", host, "--inventory", inventory, "--json"], private_sandbox
    )
    # no k3s on the host: the checks run over SSH and fail, exit 1 with the document on stdout
    assert verified.returncode == 1, verified.stderr
    data = documented("node.verify", verified.stdout)
    assert data["host"] == host and data["ok"] is False and data["exit_code"] == 1
    assert data["failed"] >= 1 and data["checks"]
    assert all(c["name"].startswith("tests.infra.test_node::test_") for c in data["checks"])
    assert "failed" in verified.stderr  # pytest's own summary, on stderr
    assert verified.stderr.rstrip().endswith(f"error: node {host}: checks failed (pytest exit 1)")
