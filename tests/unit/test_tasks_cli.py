"""The invoke command line: every task documented, config overridable the invoke way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fluxops.tasks import namespace

REPO = Path(__file__).resolve().parents[2]
INVOKE = [sys.executable, "-m", "invoke"]


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INVOKE, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_task_has_a_summary_and_every_flag_has_help() -> None:
    ns = namespace()
    names = ns.task_names
    assert {"inventory.show", "sandbox.up", "sandbox.status", "sandbox.down", "demo"} <= set(names)
    for name in names:
        task = ns[name]
        assert task.__doc__ and task.__doc__.strip().splitlines()[0], f"{name} has no docstring"
        for arg in task.get_arguments():
            assert arg.help, f"{name} --{arg.name} has no help text"
            assert "h" not in arg.names, f"{name} --{arg.name} takes -h, which must stay --help"


def test_list_shows_every_task() -> None:
    listed = invoke("--list")
    assert listed.returncode == 0, listed.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "fluxops", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0, helped.stderr
    assert "--path" in helped.stdout and "--collection" not in helped.stdout
    for name in namespace().task_names:
        assert name in listed.stdout and name in helped.stdout


def test_env_var_points_any_task_at_another_inventory() -> None:
    default = json.loads(invoke("inventory.show", "--json").stdout)
    assert {h["address"] for h in default} == {"192.168.8.5", "85.31.234.30"}
    other = invoke("inventory.show", "--json", env={"INVOKE_FLUXOPS_INVENTORY": "inventory/sandbox.yaml"})
    assert other.returncode == 0, other.stderr
    assert {h["address"] for h in json.loads(other.stdout)} == {"10.250.0.2", "10.250.0.6"}


def test_config_file_flag_overrides_project_defaults(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("fluxops:\n  inventory: inventory/sandbox.yaml\n")
    result = invoke("-f", str(settings), "inventory.show", "--json", "--cluster", "phx")
    assert result.returncode == 0, result.stderr
    assert [h["address"] for h in json.loads(result.stdout)] == ["10.250.0.6"]


def test_user_mistakes_exit_1_with_a_clear_message(tmp_path: Path) -> None:
    result = invoke("inventory.show", "--cluster", "nope")
    assert result.returncode == 1
    assert "unknown cluster 'nope'; clusters here: lab, phx" in result.stderr
    assert "Traceback" not in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("all:\n  children:\n    lab:\n      hosts:\n        n5: {ansible_port: ssh}\n")
    result = invoke("inventory.show", env={"INVOKE_FLUXOPS_INVENTORY": str(broken)})
    assert result.returncode == 1
    assert f"{broken}:5: host 'n5': ansible_port must be a port number" in result.stderr
