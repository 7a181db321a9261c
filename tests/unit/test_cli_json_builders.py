"""The ``--json`` documents of tasks that need the sandbox (node.verify, sandbox.up/down), built from
what the real tools report and checked against docs/cli.md; the runs themselves are in
tests/integration/test_cli_json_sandbox.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from fluxops.errors import FluxopsError
from fluxops.junit_checks import read_checks, verify_json
from fluxops.sandbox import HostState, HostStatus, Teardown, as_json
from tests.unit.cli_testing import schemas

CHECKS = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def test_passes():
    assert True

def test_fails():
    assert 1 == 2, "one is not two"

@pytest.mark.skip(reason="not on this host")
def test_skipped():
    pass

def test_errors(broken):
    pass
"""


def valid(task: str, data: object) -> None:
    jsonschema.validate(data, schemas()[task], cls=jsonschema.Draft202012Validator)


def test_node_verify_reads_what_pytest_reported(tmp_path: Path) -> None:
    (tmp_path / "test_node.py").write_text(CHECKS)
    report = tmp_path / "report.xml"
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "test_node.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1, ran.stdout
    checks = read_checks(report)
    outcomes = {c["name"].rpartition("::")[2]: c["outcome"] for c in checks}
    assert outcomes == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_skipped": "skipped",
        "test_errors": "error",
    }
    by_name = {c["name"].rpartition("::")[2]: c for c in checks}
    assert "one is not two" in by_name["test_fails"]["message"]
    assert by_name["test_skipped"]["message"] == "not on this host"
    assert "fixture broke" in by_name["test_errors"]["message"] and by_name["test_passes"]["message"] is None
    # pytest's own summary is the oracle for the counts
    data = verify_json("n5", ran.returncode, checks)
    valid("node.verify", data)
    assert "1 failed, 1 passed, 1 skipped, 1 error" in ran.stdout
    assert (data["ok"], data["passed"], data["failed"], data["skipped"], data["error"]) == (False, 1, 1, 1, 1)
    passed = verify_json("n5", 0, [c for c in checks if c["outcome"] == "passed"])
    valid("node.verify", passed)
    assert passed["ok"] is True


def test_node_verify_without_a_report_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "report.xml").write_text("<testsuites><testsuite>")
    with pytest.raises(FluxopsError, match=r"report\.xml: no readable pytest report"):
        read_checks(tmp_path / "report.xml")
    valid("node.verify", verify_json("n5", 4, []))


def test_sandbox_documents() -> None:
    host = HostState(
        name="n5",
        cluster="lab",
        address="10.250.0.2",
        port=22,
        machine="fluxops-n5-1a2b",
        veth="ve-n5",
        machine_address="10.250.0.1",
        network="10.250.0.0/30",
        directory="/tmp/s/hosts/n5",
        mount_point="/tmp/s/hosts/n5/root",
        nspawn_pid=4242,
        nspawn_start="123",
    )
    started = as_json.started([host], Path("/tmp/s/ssh_config"))
    valid("sandbox.up", started)
    assert started["hosts"][0]["host"] == "n5" and started["ssh_config"] == "/tmp/s/ssh_config"
    up = HostStatus("n5", "lab", "10.250.0.2", 22, "m", "ve-n5", running=True, link="up", listening=True)
    down = HostStatus(
        "phx1", "phx", "10.250.0.6", 22, "m2", "ve-phx1", running=True, link="down", listening=False
    )
    valid("sandbox.status", as_json.status([up, down]))
    assert (
        as_json.status([up])["ok"] and not as_json.status([up, down])["ok"] and not as_json.status([])["ok"]
    )
    done = as_json.teardown(Teardown(stopped=["n5"], removed=["/tmp/s/hosts/n5"], kept=["kept x: why"]))
    valid("sandbox.down", done)
    assert done == {"stopped": ["n5"], "removed": ["/tmp/s/hosts/n5"], "kept": ["kept x: why"]}
