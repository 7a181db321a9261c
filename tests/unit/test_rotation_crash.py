"""A rotation killed (a crash, not a clean exit) after each step, or between files, then resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxops.secrets import check as secrets_check
from fluxops.secrets import keystore, rotation, rules
from fluxops.secrets.encrypted import file_recipients
from fluxops.secrets.sops import KeySource, Sops
from tests.unit import rotation_crasher
from tests.unit.sops_testing import (
    decrypts_with,
    run_crashing,
    run_invoke,
    secret_yaml,
    write_encrypted,
)

FILES = 4
KILLED = -9  # SIGKILL


def populate(repo: Path) -> dict[Path, str]:
    plain = {}
    for index in range(FILES):
        rel = f"k8s/clusters/lab/infrastructure-config/s{index}.sops.yaml"
        text = secret_yaml(f"s{index}", "apps", token=f"value-{index}")
        plain[write_encrypted(repo, rel, text)] = text
    return plain


def held_keys(key_dir: Path) -> list[Path]:
    return sorted(key_dir.rglob("*.agekey"))


def assert_every_file_readable_by_a_held_key(repo: Path, key_dir: Path, files: dict[Path, str]) -> None:
    for path in files:
        assert any(decrypts_with(repo, path, key) for key in held_keys(key_dir)), path


def assert_rotated(repo: Path, key_dir: Path, files: dict[Path, str], old_public: str) -> None:
    journal = json.loads(rotation.journal_path(key_dir, "lab").read_text())
    assert journal["finished"], journal
    assert all(journal["steps"][str(n)]["state"] in {"done", "skipped"} for n in range(1, 8))
    new_public = keystore.public_key(key_dir / "lab.agekey")
    assert new_public == journal["new_public"] != old_public
    assert not (key_dir / "lab.pending.agekey").exists()
    archived = keystore.archived_keys(key_dir, "lab")
    assert [keystore.public_key(p) for p in archived] == [old_public]
    assert rules.cluster_recipients(repo, "lab") == [new_public]
    new_key = KeySource.store_file("lab", key_dir / "lab.agekey")
    for path, text in files.items():
        assert file_recipients(path) == [new_public]
        assert Sops(repo).decrypt(path, new_key).reveal().replace("    ", "  ") == text  # nothing lost
        assert not decrypts_with(repo, path, archived[0])
    assert not list(repo.rglob("*.tmp"))
    assert secrets_check.check(repo) == []


def crash_then_resume(repo: Path, key_dir: Path, fault: dict[str, str]) -> None:
    files = populate(repo)
    old_public = keystore.public_key(key_dir / "lab.agekey")
    temp = repo.parent / "tmp"
    temp.mkdir()
    crashed = run_crashing(
        repo, "keys.rotate", "--cluster", "lab", "--offline", env={**fault, "TMPDIR": str(temp)}
    )
    assert crashed.returncode == KILLED, crashed.stderr
    saved = json.loads(rotation.journal_path(key_dir, "lab").read_text())
    assert saved["finished"] is None
    assert "AGE-SECRET-KEY" not in rotation.journal_path(key_dir, "lab").read_text()
    assert_every_file_readable_by_a_held_key(repo, key_dir, files)
    again = run_invoke(repo, "keys.rotate", "--cluster", "lab")
    assert again.returncode == 1 and "--resume" in again.stderr
    resumed = run_invoke(
        repo, "keys.rotate", "--cluster", "lab", "--offline", "--resume", env={"TMPDIR": str(temp)}
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_rotated(repo, key_dir, files, old_public)
    assert not [p.name for p in temp.iterdir()]  # nothing left behind by the killed run either
    assert sorted(p.name for p in key_dir.iterdir()) == [
        "archive",
        "fluxops.lock",
        "lab.agekey",
        "lab.rotation.json",
        "phx.agekey",
    ]


@pytest.mark.parametrize("step", range(1, 8))
def test_killed_after_step_then_resumed(repo: Path, key_dir: Path, step: int) -> None:
    crash_then_resume(repo, key_dir, {rotation_crasher.AFTER_STEP: str(step)})


@pytest.mark.parametrize("step", [2, 4])
def test_killed_between_files_then_resumed(repo: Path, key_dir: Path, step: int) -> None:
    crash_then_resume(repo, key_dir, {rotation_crasher.IN_STEP: f"{step}:2"})
