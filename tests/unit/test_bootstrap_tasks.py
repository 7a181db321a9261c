"""invoke bootstrap / reconcile / status as commands (their flags, text, JSON and exit codes), with the
node opened on the simulator's k3s server through the local shell instead of SSH."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from invoke import Collection, Program

from fluxops.defaults import DEFAULTS
from fluxops.errors import FluxopsError
from fluxops.tasks import bootstrap as tasks
from tests.unit.bootstrap_testing import SimHost, World, sim_host
from tests.unit.cli_testing import schemas

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def machine(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimHost]:
    with sim_host(tmp_path / "host", world.remote) as running:

        @contextlib.contextmanager
        def opener(host: Any, settings: Any) -> Iterator[Any]:
            if host.cluster == "phx":
                raise FluxopsError("phx1: connection refused")
            yield running.node()

        monkeypatch.setattr(tasks, "OPEN_NODE", opener)
        yield running


def invoke(world: World, *argv: str) -> tuple[int, str, str]:
    """``invoke ARGV`` in the world's repository; (exit code, stdout, stderr)."""
    ns = Collection()
    for task in (tasks.bootstrap, tasks.reconcile, tasks.status):
        ns.add_task(task)
    ns.configure({"fluxops": {**copy.deepcopy(DEFAULTS), "key_dir": str(world.key_dir),
                              "inventory": str(world.inventory)}})  # fmt: skip
    program = Program(namespace=ns, binary="invoke")
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(world.root):
        try:
            program.run(["invoke", *argv], exit=True)
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
            if isinstance(exc.code, str):
                err.write(exc.code)
    return code, out.getvalue(), err.getvalue()


def documented(task: str, text: str) -> Any:
    data = json.loads(text)
    jsonschema.validate(data, schemas()[task], cls=jsonschema.Draft202012Validator)
    return data


def test_check_then_bootstrap_then_status_and_reconcile_from_a_phase(world: World, machine: SimHost) -> None:
    code, out, err = invoke(world, "bootstrap", "-c", "lab", "--check")
    assert code == 0, err
    assert "nothing was changed" in out and "install" in out and "2: infrastructure" in out.replace("∥ ", "")
    assert not machine.calls("flux") or all("reconcile" not in c["argv"] for c in machine.calls("flux"))
    code, out, err = invoke(world, "bootstrap", "-c", "lab", "--json")
    assert code == 0, err
    data = documented("bootstrap", out)
    assert data["ok"] and data["stopped_at"] is None and data["status"]["ok"]
    code, out, err = invoke(world, "bootstrap", "-c", "lab")  # text: the final table and the verdict
    assert code == 0, err
    assert "lab: ok in" in out and "waiting for phases" in out and "infrastructure-config" in out
    assert "✔ lab level 1 crds ready" in err  # piped: one plain line per phase change
    code, out, err = invoke(world, "status", "-c", "lab", "--json")
    assert code == 0, err
    status = documented("status", out)["clusters"][0]
    assert status["cluster"] == "lab" and all(k["ready"] == "True" for k in status["kustomizations"])
    assert [k["name"] for k in status["kustomizations"]][:2] == ["flux-system", "crds"]
    before = len([c for c in machine.calls("flux") if "reconcile" in c["argv"]])
    code, out, err = invoke(world, "reconcile", "-c", "lab", "--phase", "infrastructure-config", "--json")
    assert code == 0, err
    data = documented("reconcile", out)
    names = [p["name"] for p in data["phases"]]
    assert names[0] == "flux-system" and "infrastructure-config" in names and "apps" in names
    assert "crds" not in names and "storage" not in names  # earlier levels are left alone
    after = [c["argv"] for c in machine.calls("flux") if "reconcile" in c["argv"]][before:]
    assert len(after) == len(names)
    code, _, err = invoke(world, "reconcile", "-c", "lab", "--phase", "nope")
    assert code == 1 and "has no phase nope" in err


def test_status_of_every_cluster_in_parallel_reports_the_unreachable(world: World, machine: SimHost) -> None:
    code, out, _ = invoke(world, "status", "--all", "--json")
    data = documented("status", out)
    assert code == 1 and not data["ok"]
    lab, phx = data["clusters"]
    assert (lab["cluster"], phx["cluster"]) == ("lab", "phx")
    assert "not bootstrapped" in lab["error"] and phx["error"] == "phx1: connection refused"
    code, _, err = invoke(world, "status", "-c", "lab", "--all")
    assert code == 2 or "exactly one of --cluster and --all" in err
