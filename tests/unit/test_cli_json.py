"""``--json`` of every task that reports state, checked against the shape docs/cli.md gives it."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fluxops.secrets import keystore
from fluxops.tasks import namespace
from tests.unit.cli_testing import PLAYBOOK, PROGRAMS, local_inventory, run, schemas
from tests.unit.sops_testing import secret_yaml, write_encrypted

IC = "k8s/clusters/{}/infrastructure-config"


def documented(task: str, output: str) -> Any:
    """The task's JSON document, valid against its schema in docs/cli.md."""
    data = json.loads(output)
    jsonschema.validate(data, schemas()[task], cls=jsonschema.Draft202012Validator)
    return data


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_task_with_json_has_a_documented_shape() -> None:
    ns = namespace()
    with_json = {n for n in ns.task_names if any("json" in a.names for a in ns[n].get_arguments())}
    documented_tasks = set(schemas())
    for schema in schemas().values():
        jsonschema.Draft202012Validator.check_schema(schema)
    # node.up prints play's document (one code path, shared); every other task has its own shape
    assert with_json - {"node.up"} == documented_tasks


@pytest.mark.parametrize("program", PROGRAMS)
def test_inventory_show_and_ping(program: str, tmp_path: Path) -> None:
    shown = run(program, "inventory.show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert {h["cluster"] for h in documented("inventory.show", shown.stdout)} == {"lab", "phx"}
    inventory = local_inventory(tmp_path, port=closed_port())
    pinged = run(program, "inventory.ping", "--json", env={"INVOKE_FLUXOPS_INVENTORY": str(inventory)})
    assert pinged.returncode == 1
    data = documented("inventory.ping", pinged.stdout)
    assert data["ok"] is False and [h["host"] for h in data["hosts"]] == ["n5", "phx1"]
    assert all(h["millis"] is None and h["detail"] for h in data["hosts"])
    assert pinged.stderr == "error: unreachable: n5, phx1\n"


def test_keys_show(repo: Path, key_dir: Path) -> None:
    shown = run("invoke", "keys.show", "--json", cwd=repo)
    assert shown.returncode == 0, shown.stderr
    data = documented("keys.show", shown.stdout)
    assert data["ok"] and [c["key_file"] for c in data["clusters"]] == [
        str(key_dir / "lab.agekey"),
        str(key_dir / "phx.agekey"),
    ]
    (key_dir / "phx.agekey").write_text("not a key\n")
    broken = run("fluxops", "keys.show", "--json", cwd=repo)
    assert broken.returncode == 1
    data = documented("keys.show", broken.stdout)
    assert data["ok"] is False and data["clusters"][1]["problem"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_keys_env(program: str, repo: Path, key_dir: Path) -> None:
    one = run(program, "keys.env", "-c", "lab", "--json", cwd=repo)
    assert one.returncode == 0, one.stderr
    data = documented("keys.env", one.stdout)
    lab = str(key_dir / "lab.agekey")
    assert data["variables"] == {"SOPS_AGE_KEY_FILE": lab} and data["missing"] == []
    assert data["clusters"] == [{"cluster": "lab", "key_file": lab}]
    assert data["lines"] == run(program, "keys.env", "-c", "lab", cwd=repo).stdout.splitlines()
    (key_dir / "phx.agekey").unlink()
    every = run(program, "keys.env", "--json", cwd=repo)
    assert every.returncode == 0 and every.stderr == "", every.stderr
    data = documented("keys.env", every.stdout)
    assert data["variables"] == {"SOPS_AGE_KEY_CMD": f"cat {lab}"} and data["missing"] == ["phx"]
    assert "AGE-SECRET-KEY" not in every.stdout


@pytest.mark.parametrize("program", PROGRAMS)
def test_keys_rotate_check(program: str, repo: Path, key_dir: Path) -> None:
    lab = IC.format("lab")
    write_encrypted(repo, f"{lab}/db.sops.yaml", secret_yaml("db", "apps", password="x"))
    before = {p: p.read_bytes() for p in [*repo.rglob("*"), *key_dir.rglob("*")] if p.is_file()}
    planned = run(program, "keys.rotate", "-c", "lab", "--check", "--offline", "--json", cwd=repo)
    assert planned.returncode == 0, planned.stderr
    data = documented("keys.rotate", planned.stdout)
    assert data["files"] == [f"{lab}/db.sops.yaml"] and data["offline"] is True
    assert data["old_key"] == {
        "public": keystore.public_key(key_dir / "lab.agekey"),
        "file": str(key_dir / "lab.agekey"),
    }
    assert data["new_key"]["public"] is None and not data["in_progress"] and data["started"] is None
    assert [s["state"] for s in data["steps"]] == ["pending"] * 7
    assert [s["step"] for s in data["steps"] if s["needs_cluster"]] == [3, 6]
    assert {p: p.read_bytes() for p in [*repo.rglob("*"), *key_dir.rglob("*")] if p.is_file()} == before
    # the text plan says the same
    text = run(program, "keys.rotate", "-c", "lab", "--check", "--offline", cwd=repo).stdout
    assert all(f"[pending] {s['step']}. {s['does']}" in text for s in data["steps"])
    alone = run(program, "keys.rotate", "-c", "lab", "--json", cwd=repo)
    assert alone.returncode == 2 and alone.stderr.startswith("error: keys.rotate --json goes with --check")
    assert {p: p.read_bytes() for p in [*repo.rglob("*"), *key_dir.rglob("*")] if p.is_file()} == before
    # a rotation that stopped before step 3 (no way to put keys into the cluster yet): in progress
    stopped = run(program, "keys.rotate", "-c", "lab", cwd=repo)
    assert stopped.returncode == 1 and "stopped before step 4" in stopped.stderr, stopped.stderr
    resumed = run(program, "keys.rotate", "-c", "lab", "--check", "--json", cwd=repo)
    data = documented("keys.rotate", resumed.stdout)
    assert data["in_progress"] and data["started"] and data["offline"] is False
    assert [s["state"] for s in data["steps"]] == ["done", "done"] + ["pending"] * 5
    assert data["new_key"]["public"] == keystore.public_key(key_dir / "lab.pending.agekey")


def test_sandbox_status_without_a_sandbox(tmp_path: Path) -> None:
    shown = run("invoke", "sandbox.status", "--json", env={"INVOKE_FLUXOPS_SANDBOX_DIR": str(tmp_path)})
    assert shown.returncode == 1
    assert documented("sandbox.status", shown.stdout) == {"ok": False, "hosts": []}
    assert shown.stderr.startswith("error: no sandbox is running")


def test_the_secret_tasks(repo: Path, tmp_path: Path) -> None:
    lab, phx = IC.format("lab"), IC.format("phx")
    write_encrypted(repo, f"{lab}/db.sops.yaml", secret_yaml("db", "apps", password="x"))
    (repo / phx / "p.sops.yaml").write_text(secret_yaml("p", k="v"))
    checked = run("invoke", "secrets.check", "--json", cwd=repo)
    assert checked.returncode == 1
    data = documented("secrets.check", checked.stdout)
    assert data["ok"] is False and [f["path"] for f in data["findings"]] == [f"{phx}/p.sops.yaml"]
    encrypted = run("fluxops", "secrets.encrypt", "--json", cwd=repo)
    assert encrypted.returncode == 0, encrypted.stderr
    data = documented("secrets.encrypt", encrypted.stdout)
    assert data == {"ok": True, "encrypted": [f"{phx}/p.sops.yaml"], "damaged": [], "error": None}
    checked = run("fluxops", "secrets.check", "--json", cwd=repo)
    assert checked.returncode == 0 and documented("secrets.check", checked.stdout)["encrypted"] == 2
    rekeyed = run("invoke", "secrets.rekey", "--json", cwd=repo)
    assert rekeyed.returncode == 0, rekeyed.stderr
    data = documented("secrets.rekey", rekeyed.stdout)
    assert (data["unchanged"], data["failed"], len(data["files"])) == (2, 0, 2)
    scaffolded = run("invoke", "secrets.scaffold", "-c", "lab", "--json", cwd=repo)
    assert scaffolded.returncode == 0, scaffolded.stderr
    assert documented("secrets.scaffold", scaffolded.stdout)["ok"] is True


def test_layout_validate_and_audit() -> None:
    validated = run("invoke", "layout.validate", "-c", "phx", "--json")
    report = documented("layout.validate", validated.stdout)
    assert validated.returncode == (0 if report["ok"] else 1)
    assert list(report["clusters"]) == ["phx"]
    audited = run("fluxops", "layout.audit", "--json")
    assert audited.returncode == 0, audited.stderr
    data = documented("layout.audit", audited.stdout)
    assert data["applied"] is None
    assert all(set(d["clusters"]) == {"lab", "phx"} for d in data["duplicates"])


@pytest.mark.parametrize("program", PROGRAMS)
def test_layout_tree(program: str, tmp_path: Path) -> None:
    shown = run(program, "layout.tree", "--json")
    assert shown.returncode == 0, shown.stderr
    data = documented("layout.tree", shown.stdout)
    assert [c["cluster"] for c in data["clusters"]] == ["lab", "phx"]
    text = run(program, "layout.tree", "-c", "lab").stdout
    lab = data["clusters"][0]
    # the text levels the phases and draws components beneath them; the JSON levels every Kustomization
    counts = re.match(r"cluster lab  \((\d+) phases, (\d+) components on \d+ levels", text)
    assert counts and int(counts[1]) + int(counts[2]) == len(lab["phases"])
    by_name = {p["name"]: p for p in lab["phases"]}
    assert by_name["crds"]["level"] == 1 and by_name["crds"]["dependsOn"] == []
    # parallel phases share a level, and each names the other
    for phase in lab["phases"]:
        for other in phase["parallel_with"]:
            assert (
                by_name[other]["level"] == phase["level"] and phase["name"] in by_name[other]["parallel_with"]
            )
        assert all(by_name[d]["level"] < phase["level"] for d in phase["dependsOn"])
        assert phase["file"].startswith("k8s/clusters/lab/") and phase["never_applied"] is None
    assert [p["level"] for p in lab["phases"]] == sorted(p["level"] for p in lab["phases"])
    assert any(p["sops"] for p in lab["phases"]) and any(not p["wait"] for p in lab["phases"])
    # a file still written beside the JSON, its line on stderr; stdout stays one document
    dot = tmp_path / "lab.dot"
    both = run(program, "layout.tree", "-c", "lab", "--json", "--dot", str(dot))
    assert both.returncode == 0, both.stderr
    assert documented("layout.tree", both.stdout)["clusters"] == [lab]
    assert dot.read_text().startswith("digraph") and f"wrote {dot}" in both.stderr
    clash = run(program, "layout.tree", "--json", "--dot", "-")
    assert clash.returncode == 2 and clash.stderr.startswith("error: --json and --dot - both print to stdout")


@pytest.mark.parametrize("program", PROGRAMS)
def test_play(program: str, tmp_path: Path) -> None:
    inventory = local_inventory(tmp_path)
    book = tmp_path / "marks.yaml"
    book.write_text(PLAYBOOK)
    ran = run(program, "play", str(book), "--inventory", str(inventory), "--json", "--check")
    assert ran.returncode == 0, ran.stderr
    data = documented("play", ran.stdout)
    assert data["check"] is True and data["changed"] == 2 and data["failed_hosts"] == []


def test_rehearse() -> None:
    rehearsed = run("fluxops", "rehearse", "-c", "phx", "--no-key", "--json")
    data = documented("rehearse", rehearsed.stdout)
    assert rehearsed.returncode == (0 if data["ok"] else 1)
    assert data["cluster"] == "phx" and data["key"] is None and data["phases"]
