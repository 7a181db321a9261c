"""Key rotation with real sops: 50 files, the plan, refusals, offline steps."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fluxops.errors import FluxopsError, RotationError
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

IC = "k8s/clusters/lab/infrastructure-config"


def populate(repo: Path, count: int, cluster: str = "lab") -> dict[Path, str]:
    """``count`` encrypted secrets in the cluster; returns path -> plaintext."""
    plain = {}
    for index in range(count):
        rel = f"k8s/clusters/{cluster}/infrastructure-config/s{index:03d}.sops.yaml"
        text = secret_yaml(f"s{index:03d}", "apps", token=f"value-{index}", other=f"x{index}")
        plain[write_encrypted(repo, rel, text)] = text
    return plain


def quiet(_: str) -> None:
    pass


def test_rotation_of_50_secrets_leaves_every_file_for_the_new_key_only(repo: Path, key_dir: Path) -> None:
    files = populate(repo, 50)
    phx = populate(repo, 2, "phx")
    phx_before = {p: p.read_bytes() for p in phx}
    old_file = key_dir / "lab.agekey"
    old_public = keystore.public_key(old_file)
    old_text = old_file.read_text()
    messages: list[str] = []

    journal = rotation.Rotation(repo, key_dir, "lab", offline=True, report=messages.append).run()

    new_public = keystore.public_key(key_dir / "lab.agekey")
    assert new_public != old_public and journal.new_public == new_public and journal.finished
    archived = keystore.archived_keys(key_dir, "lab")
    assert len(archived) == 1 and archived[0].read_text() == old_text
    assert stat.S_IMODE(archived[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((key_dir / "lab.agekey").stat().st_mode) == 0o600
    assert not (key_dir / "lab.pending.agekey").exists()
    assert rules.cluster_recipients(repo, "lab") == [new_public]
    sops = Sops(repo)
    new_key = KeySource.store_file("lab", key_dir / "lab.agekey")
    for path, text in files.items():
        assert file_recipients(path) == [new_public]
        assert not decrypts_with(repo, path, archived[0])
        assert sops.decrypt(path, new_key).reveal().replace("    ", "  ") == text
    assert {p: p.read_bytes() for p in phx} == phx_before
    assert secrets_check.check(repo) == []
    saved = json.loads((key_dir / "lab.rotation.json").read_text())
    assert saved["finished"] and saved["old_public"] == old_public and saved["new_public"] == new_public
    assert {s["state"] for s in saved["steps"].values()} == {"done", "skipped"}
    assert saved["steps"]["3"]["detail"] == "offline" and saved["steps"]["6"]["state"] == "skipped"
    assert "AGE-SECRET-KEY" not in (key_dir / "lab.rotation.json").read_text()
    assert stat.S_IMODE((key_dir / "lab.rotation.json").stat().st_mode) == 0o600


def test_check_prints_the_plan_and_changes_nothing(repo: Path, key_dir: Path) -> None:
    populate(repo, 3)
    before = {p: p.read_bytes() for p in [*repo.rglob("*"), *key_dir.rglob("*")] if p.is_file()}
    plan = rotation.Rotation(repo, key_dir, "lab").plan()
    text = "\n".join(plan)
    assert "3 encrypted file(s)" in text and keystore.public_key(key_dir / "lab.agekey") in text
    assert all(f"{n}. " in text for n in range(1, 8))
    assert {p: p.read_bytes() for p in [*repo.rglob("*"), *key_dir.rglob("*")] if p.is_file()} == before
    assert "AGE-SECRET-KEY" not in text


def test_without_the_cluster_push_the_rotation_stops_before_any_file_loses_the_old_key(
    repo: Path, key_dir: Path
) -> None:
    files = populate(repo, 2)
    old_file = key_dir / "lab.agekey"
    old_public = keystore.public_key(old_file)
    plan = "\n".join(rotation.Rotation(repo, key_dir, "lab", report=quiet).plan())
    assert "3. put both keys" in plan and "without it the rotation stops here" in plan
    with pytest.raises(RotationError, match="stopped before step 4") as err:
        rotation.Rotation(repo, key_dir, "lab", report=quiet).run()
    assert "--resume --offline" in str(err.value) and rotation.PUSH_UNAVAILABLE in str(err.value)
    journal = rotation.Journal.load(rotation.journal_path(key_dir, "lab"))
    assert journal is not None and journal.finished is None
    assert [journal.state(n) for n in range(1, 8)] == ["done", "done"] + ["pending"] * 5
    new_file = key_dir / "lab.pending.agekey"
    assert rules.cluster_recipients(repo, "lab") == [old_public, keystore.public_key(new_file)]
    for path in files:  # what Flux in the cluster holds (the old key) still decrypts everything
        assert decrypts_with(repo, path, old_file) and decrypts_with(repo, path, new_file)
    # the operator put both keys into the cluster by hand: --offline finishes it
    finished = rotation.Rotation(repo, key_dir, "lab", offline=True, report=quiet).run(resume=True)
    assert finished.finished and finished.state(3) == "skipped"
    for path in files:
        assert file_recipients(path) == [keystore.public_key(old_file)]


def test_push_boundary_gets_key_files_not_keys(repo: Path, key_dir: Path) -> None:
    populate(repo, 1)
    pushed: list[list[Path]] = []

    def push(cluster: str, key_files: list[Path]) -> str:
        assert cluster == "lab"
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in key_files)
        pushed.append([p.name for p in key_files])
        return "pushed"

    rotation.Rotation(repo, key_dir, "lab", push=push, report=quiet).run()
    assert pushed == [["lab.agekey", "lab.pending.agekey"], ["lab.pending.agekey"]]


def test_resume_needs_a_journal_and_a_journal_needs_resume(repo: Path, key_dir: Path) -> None:
    populate(repo, 1)
    with pytest.raises(RotationError, match="no rotation of cluster lab to resume"):
        rotation.Rotation(repo, key_dir, "lab", report=quiet).run(resume=True)
    journal = rotation.Journal(
        path=rotation.journal_path(key_dir, "lab"),
        cluster="lab",
        root=str(repo),
        old_public=keystore.public_key(key_dir / "lab.agekey"),
        rule_before=[],
    )
    journal.commit(1)
    with pytest.raises(RotationError, match="already in progress") as err:
        rotation.Rotation(repo, key_dir, "lab", report=quiet).run()
    assert "--resume" in str(err.value) and str(journal.path) in str(err.value)


def test_rotation_refuses_files_the_old_key_cannot_open(repo: Path, key_dir: Path, tmp_path: Path) -> None:
    populate(repo, 1)
    stranger = write_encrypted(
        repo, "k8s/clusters/phx/infrastructure-config/x.sops.yaml", secret_yaml("x", a="b")
    )
    stranger.rename(repo / IC / "x.sops.yaml")
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    with pytest.raises(RotationError, match=r"not encrypted to the key") as err:
        rotation.Rotation(repo, key_dir, "lab", report=quiet).run()
    assert "x.sops.yaml" in str(err.value)
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    assert not rotation.journal_path(key_dir, "lab").exists()


def test_an_environment_key_does_not_fool_the_verification(
    repo: Path, key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keys.env` exports a key command for plain sops; the rotation uses only the key store's keys."""
    files = populate(repo, 2)
    old = key_dir / "lab.agekey"
    monkeypatch.setenv("SOPS_AGE_KEY_CMD", f"cat {old}")
    monkeypatch.setenv("SOPS_AGE_KEY", old.read_text())
    journal = rotation.Rotation(repo, key_dir, "lab", offline=True, report=quiet).run()
    archived = keystore.archived_keys(key_dir, "lab")[0]
    for path in files:
        assert file_recipients(path) == [journal.new_public]
        assert not decrypts_with(repo, path, archived)


def test_rotation_without_a_key_names_the_file_and_the_fix(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(FluxopsError) as err:
        rotation.Rotation(repo, tmp_path / "empty", "lab", report=quiet).run()
    assert str(tmp_path / "empty" / "lab.agekey") in str(err.value)
    assert "invoke keys.import --cluster lab FILE" in str(err.value)


def test_keys_in_the_default_sops_key_file_do_not_fool_the_verification(
    repo: Path, key_dir: Path, tmp_path: Path
) -> None:
    files = populate(repo, 2)
    home = tmp_path / "operator-home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    crashed = run_crashing(
        repo, "keys.rotate", "--cluster", "lab", "--offline", env={**env, rotation_crasher.AFTER_STEP: "1"}
    )
    assert crashed.returncode == -9, crashed.stderr
    default_keys = home / ".config" / "sops" / "age" / "keys.txt"
    default_keys.parent.mkdir(parents=True)
    # operators often collect every key there: sops would add it to any SOPS_AGE_KEY_FILE
    default_keys.write_text((key_dir / "lab.pending.agekey").read_text())
    default_keys.chmod(0o600)
    done = run_invoke(repo, "keys.rotate", "--cluster", "lab", "--resume", env=env)
    assert done.returncode == 0, done.stderr
    archived = keystore.archived_keys(key_dir, "lab")[0]
    for path in files:
        assert not decrypts_with(repo, path, archived)
