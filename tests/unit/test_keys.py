"""Age keys: the store (0600, atomic, never overwritten silently) and the .sops.yaml rules."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pyrage
import pytest

from fluxops import files
from fluxops.errors import FluxopsError, KeyStoreError
from fluxops.secrets import keys, keystore, rules
from fluxops.secrets.encrypted import file_recipients
from tests.unit.sops_testing import key_secret, make_repo, run_invoke, secret_yaml, write_encrypted


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", tmp_path / "keys")


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_an_age_keygen_file_0600(repo: Path, key_dir: Path) -> None:
    done = keys.generate(repo, key_dir, "lab")
    path = key_dir / "lab.agekey"
    assert done.key.path == path
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# created: ")
    assert lines[1] == f"# public key: {done.key.public}"
    assert lines[2].startswith(keystore.SECRET_PREFIX)
    assert str(pyrage.x25519.Identity.from_str(lines[2]).to_public()) == done.key.public
    assert mode(path) == 0o600
    assert mode(key_dir) == 0o700
    assert [p.name for p in key_dir.iterdir()] == ["lab.agekey"]  # no temp file left behind


def test_key_file_is_0600_before_a_byte_is_written_and_at_rename(
    repo: Path, key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[tuple[int, int]] = []  # (mode, size) of each temp file in the key store when first written
    renamed: list[int] = []
    real_fdopen, real_replace = os.fdopen, os.replace

    def spy_fdopen(fd: int, *args: object, **kwargs: object) -> object:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).parent == key_dir:
            info = os.fstat(fd)
            opened.append((stat.S_IMODE(info.st_mode), info.st_size))
        return real_fdopen(fd, *args, **kwargs)  # type: ignore[call-overload]

    def spy_replace(src: str, dst: str) -> None:
        if Path(dst).parent == key_dir:
            renamed.append(mode(Path(src)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fdopen", spy_fdopen)
    monkeypatch.setattr(files.os, "replace", spy_replace)
    keys.generate(repo, key_dir, "lab")
    assert opened == [(0o600, 0)]
    assert renamed == [0o600]


def test_generate_refuses_to_overwrite_and_force_archives(repo: Path, key_dir: Path) -> None:
    first = keys.generate(repo, key_dir, "lab")
    before = (key_dir / "lab.agekey").read_text()
    with pytest.raises(KeyStoreError) as err:
        keys.generate(repo, key_dir, "lab")
    assert "--force" in str(err.value) and str(key_dir / "lab.agekey") in str(err.value)
    assert (key_dir / "lab.agekey").read_text() == before

    second = keys.generate(repo, key_dir, "lab", force=True)
    assert second.key.public != first.key.public
    assert second.archived is not None and second.archived.read_text() == before
    assert mode(second.archived) == 0o600
    assert keystore.archived_keys(key_dir, "lab") == [second.archived]
    assert rules.cluster_recipients(repo, "lab") == [second.key.public]


def test_rules_are_added_before_a_catch_all_and_edited_by_round_trip(repo: Path, key_dir: Path) -> None:
    config = repo / ".sops.yaml"
    config.write_text(
        "# sops rules: first match wins\n"
        "creation_rules:\n"
        "  # everything else\n"
        "  - path_regex: .*\\.sops\\.yaml$\n"
        "    age: age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq  # fallback\n"
    )
    lab = keys.generate(repo, key_dir, "lab").key
    phx = keys.generate(repo, key_dir, "phx").key
    text = config.read_text()
    assert text.startswith("# sops rules: first match wins\n")
    assert "# everything else" in text and "# fallback" in text
    found = rules.rules(repo)
    assert [r.get("path_regex") for r in found] == [
        rules.cluster_regex("lab"),
        rules.cluster_regex("phx"),
        ".*\\.sops\\.yaml$",
    ]
    assert found[0]["encrypted_regex"] == "^(data|stringData)$"
    assert rules.cluster_recipients(repo, "lab") == [lab.public]
    assert rules.cluster_recipients(repo, "phx") == [phx.public]

    new = keys.generate(repo, key_dir, "lab", force=True).key
    found = rules.rules(repo)
    assert len(found) == 3 and found[0]["age"] == new.public
    assert "# fallback" in config.read_text()


def test_unknown_cluster_is_refused_and_nothing_changes(repo: Path, key_dir: Path) -> None:
    with pytest.raises(FluxopsError) as err:
        keys.generate(repo, key_dir, "nope")
    assert "nope" in str(err.value) and "lab, phx" in str(err.value)
    assert not key_dir.exists()
    assert not (repo / ".sops.yaml").exists()


def test_cli_generate_and_show_never_print_the_private_key(repo: Path, key_dir: Path) -> None:
    made = run_invoke(repo, "keys.generate", "--cluster", "lab")
    assert made.returncode == 0, made.stderr
    secret = key_secret(key_dir / "lab.agekey")
    shown = run_invoke(repo, "keys.show")
    assert shown.returncode == 0, shown.stderr
    public = keystore.public_key(key_dir / "lab.agekey")
    assert public in shown.stdout and str(key_dir / "lab.agekey") in shown.stdout
    assert "phx" in shown.stdout and "missing" in shown.stdout
    for output in (made.stdout, made.stderr, shown.stdout, shown.stderr):
        assert secret not in output and "AGE-SECRET-KEY" not in output
    again = run_invoke(repo, "keys.generate", "--cluster", "lab")
    assert again.returncode == 1 and "--force" in again.stderr and "Traceback" not in again.stderr
    unknown = run_invoke(repo, "keys.show", "--cluster", "nope")
    assert unknown.returncode == 1 and "unknown cluster 'nope'" in unknown.stderr


def test_force_then_rekey_with_the_archived_key_moves_files_to_the_new_key(repo: Path, key_dir: Path) -> None:
    keys.generate(repo, key_dir, "lab")
    path = write_encrypted(
        repo, "k8s/clusters/lab/infrastructure-config/s.sops.yaml", secret_yaml("s", k="v")
    )
    done = run_invoke(repo, "keys.generate", "--cluster", "lab", "--force")
    assert done.returncode == 0, done.stderr
    archived = keystore.archived_keys(key_dir, "lab")[0]
    assert f"SOPS_AGE_KEY_FILE={archived} invoke secrets.rekey --cluster lab" in done.stdout
    rekeyed = run_invoke(repo, "secrets.rekey", "--cluster", "lab", env={"SOPS_AGE_KEY_FILE": str(archived)})
    assert rekeyed.returncode == 0, rekeyed.stderr
    assert file_recipients(path) == [keystore.public_key(key_dir / "lab.agekey")]
    shown = run_invoke(repo, "keys.show", "--cluster", "lab", env={"SOPS_AGE_KEY_FILE": str(archived)})
    assert f"{archived} (from $SOPS_AGE_KEY_FILE) decrypts first" in shown.stdout


def test_generate_updates_an_anchored_rule_in_place(repo: Path, key_dir: Path) -> None:
    (repo / ".sops.yaml").write_text(
        "stores:\n  yaml:\n    indent: 2\ncreation_rules:\n"
        "  - path_regex: ^k8s/clusters/lab/.*\\.sops\\.yaml$\n"
        "    encrypted_regex: ^(data|stringData)$\n"
        "    age: age1yqjw8fjyjnnpta0v6kjrfuvmuapa3nr9smv2gleu7kkhdxdf5cws6pxuhe\n"
    )
    key = keys.generate(repo, key_dir, "lab").key
    found = rules.rules(repo)
    assert len(found) == 1 and found[0]["age"] == key.public
    assert found[0]["path_regex"] == "^k8s/clusters/lab/.*\\.sops\\.yaml$"
    assert (repo / ".sops.yaml").read_text().startswith("stores:\n  yaml:\n    indent: 2\n")
    path = write_encrypted(
        repo, "k8s/clusters/lab/infrastructure-config/s.sops.yaml", secret_yaml("s", k="v")
    )
    assert file_recipients(path) == [key.public]
    assert "\n  name: s\n" in path.read_text()  # the stores setting (2-space indent) still applies
