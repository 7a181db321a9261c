"""Paths from where you stand: every task that takes a file reads it relative to the current directory,
from any folder of the repository; ``fluxops`` finds the repository upward, or takes ``--path``, and
works in a repository without ``invoke.yaml``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fluxops.defaults import DEFAULTS
from tests.unit.cli_testing import PLAYBOOK, PROGRAMS, REPO, local_inventory, run
from tests.unit.sops_testing import secret_yaml, write_encrypted

IC = "k8s/clusters/lab/infrastructure-config"


@pytest.mark.parametrize("program", PROGRAMS)
def test_secret_files_are_read_and_written_from_the_current_directory(program: str, repo: Path) -> None:
    write_encrypted(repo, f"{IC}/db.sops.yaml", secret_yaml("db", "apps", password="pw-one"))
    here = repo / "k8s" / "clusters" / "lab"
    (here / "token.txt").write_text("tok-two")
    # what tab completion gives from here; the same path from the root is not a file
    shown = run(program, "secrets.view", "infrastructure-config/db.sops.yaml", cwd=here)
    assert shown.returncode == 0, shown.stderr
    assert "pw-one" in shown.stdout
    missing = run(program, "secrets.view", "db.sops.yaml", cwd=here)
    assert missing.returncode == 1
    assert missing.stderr == f"error: {here / 'db.sops.yaml'}: no such file\n"
    file = "infrastructure-config/db.sops.yaml"
    edited = run(program, "secrets.edit", file, cwd=here, env={"EDITOR": "true"})
    assert edited.returncode == 0, edited.stderr
    assert edited.stdout.strip().splitlines()[-1] == f"{file} unchanged"
    made = run(
        program,
        *("secrets.new", "api", "-c", "lab", "-n", "apps", "--from-file", "token=token.txt"),
        *("--dest", "infrastructure-config/api.sops.yaml"),
        cwd=here,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[-1] == f"wrote {repo / IC / 'api.sops.yaml'} (encrypted)"
    again = run(program, "secrets.view", f"{IC}/api.sops.yaml", cwd=repo)
    assert yaml.safe_load(again.stdout)["stringData"] == {"token": "tok-two"}


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_key_file_is_read_from_the_current_directory(program: str, repo: Path, key_dir: Path) -> None:
    here = repo / "k8s"
    (here / "backup.txt").write_text((key_dir / "lab.agekey").read_text())
    done = run(program, "keys.import", "backup.txt", "-c", "lab", cwd=here)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("cluster lab: public key age1")
    gone = run(program, "keys.import", "k8s/backup.txt", "-c", "lab", cwd=here)
    assert gone.returncode == 1 and str(here / "k8s" / "backup.txt") in gone.stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_playbooks_and_inventories_are_read_from_the_current_directory(program: str, repo: Path) -> None:
    inventory = local_inventory(repo / "playbooks")
    (repo / "playbooks" / "marks.yaml").write_text(PLAYBOOK)
    here = repo / "k8s"
    ran = run(program, "play", "../playbooks/marks.yaml", "-i", "../playbooks/hosts.yaml", "--json", cwd=here)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["recap"]["n5"]["changed"] == 1
    assert sorted(p.name for p in (inventory.parent / "out").iterdir()) == ["n5", "phx1"]
    for task in ("node.up", "node.verify"):
        unknown = run(program, task, "--host", "nope", "--inventory", "../playbooks/hosts.yaml", cwd=here)
        assert unknown.returncode == 1, unknown.stderr
        assert unknown.stderr.startswith("error: ") and "unknown host 'nope'" in unknown.stderr
        elsewhere = run(program, task, "--host", "n5", "-i", "hosts.yaml", cwd=here)
        assert elsewhere.returncode == 1 and str(here / "hosts.yaml") in elsewhere.stderr


def test_fluxops_finds_the_repository_upward_or_takes_path(repo: Path, tmp_path: Path) -> None:
    inside = run("invoke", "keys.show", "--json", cwd=repo)
    assert inside.returncode == 0, inside.stderr
    expected = json.loads(inside.stdout)
    assert [c["cluster"] for c in expected["clusters"]] == ["lab", "phx"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for cwd, args, env in (
        (repo / "k8s" / "clusters" / "lab", (), {}),
        (outside, ("--path", str(repo)), {}),
        (outside, ("--path", "../repo"), {}),
        (outside, (), {"FLUXOPS_PATH": str(repo)}),
    ):
        for argv in (("keys.show", "--json", *args), (*args, "keys.show", "--json")):
            shown = run("fluxops", *argv, cwd=cwd, env=env)
            assert shown.returncode == 0, (argv, shown.stderr)
            assert json.loads(shown.stdout) == expected, argv
    nowhere = run("fluxops", "keys.show", "--path", str(tmp_path / "nope"), cwd=outside)
    assert nowhere.returncode == 2
    assert nowhere.stderr == f"error: --path {tmp_path / 'nope'}: no such folder\n"


def test_a_repository_without_invoke_yaml_gets_the_built_in_settings(tmp_path: Path) -> None:
    root = tmp_path / "home-ops"
    (root / ".git").mkdir(parents=True)
    (root / "k8s" / "clusters" / "edge" / "apps").mkdir(parents=True)
    home = Path.home()
    shown = run("fluxops", "keys.show", "--json", cwd=root / "k8s" / "clusters" / "edge" / "apps")
    assert shown.returncode == 0, shown.stderr
    [edge] = json.loads(shown.stdout)["clusters"]
    assert edge["cluster"] == "edge" and edge["key_file"] == str(home / ".config/sops/age/edge.agekey")
    no_inventory = run("fluxops", "inventory.show", cwd=root / "k8s")
    assert no_inventory.returncode == 1
    assert str(root / "inventory" / "hosts.yaml") in no_inventory.stderr
    assert no_inventory.stderr.startswith("error: ") and "Traceback" not in no_inventory.stderr
    # settings: the environment and -f override the built-in ones, as in a repository with invoke.yaml
    inventory = local_inventory(tmp_path / "hosts")
    env = {"INVOKE_FLUXOPS_INVENTORY": str(inventory)}
    listed = run("fluxops", "inventory.show", "--json", "-c", "phx", cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [h["name"] for h in json.loads(listed.stdout)] == ["phx1"]
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"fluxops:\n  inventory: {inventory}\n")
    listed = run("fluxops", "-f", str(settings), "inventory.show", "--json", cwd=root)
    assert [h["name"] for h in json.loads(listed.stdout)] == ["n5", "phx1"]


def test_the_built_in_settings_are_this_repositorys() -> None:
    """What fluxops/defaults.py gives a repository without invoke.yaml is what invoke.yaml writes out."""
    written = yaml.safe_load((REPO / "invoke.yaml").read_text())["fluxops"]
    assert {key: written[key] for key in DEFAULTS} == DEFAULTS


def test_fluxops_and_invoke_validate_the_same_tree(tmp_path: Path) -> None:
    here = run("invoke", "layout.validate", "--cluster", "lab", "--json", cwd=REPO / "k8s" / "clusters")
    there = run("fluxops", "layout.validate", "--path", str(REPO), "--cluster", "lab", "--json", cwd=tmp_path)
    assert here.returncode == there.returncode
    report = json.loads(there.stdout)
    assert list(report["clusters"]) == ["lab"]
    assert report == json.loads(here.stdout)
