"""Nothing a user does loses a secret: damaged, tampered, oddly named and foreign files, keys, locks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fluxops.errors import KeyStoreError, LockedError, SopsError
from fluxops.files import exclusive
from fluxops.secrets import keys, keystore, repository, rotation, rules
from fluxops.secrets.encrypted import file_recipients, inspect
from fluxops.secrets.sops import Sops
from tests.unit.sops_testing import (
    REPO,
    decrypts_with,
    key_secret,
    run_invoke,
    secret_yaml,
    write_encrypted,
)

IC = "k8s/clusters/lab/infrastructure-config"


def quiet(_: str) -> None:
    pass


def reference(repo: Path, *names: str) -> None:
    """List ``names`` as resources of the lab infrastructure-config kustomization."""
    kustomization = repo / IC / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "".join(f"  - {n}\n" for n in names))


def tamper_metadata(path: Path) -> None:
    """Edit one readable metadata field by hand, as a careless merge would: the MAC no longer verifies."""
    text = path.read_text()
    changed = re.sub(r'lastmodified: "\d{4}', 'lastmodified: "2001', text, count=1)
    assert changed != text
    path.write_text(changed)


def truncate_before_metadata(path: Path) -> None:
    """Cut the file just before its ``sops:`` block (an interrupted copy, a bad merge)."""
    text = path.read_text()
    path.write_text(text[: text.index("\nsops:") + 1])


def snapshot(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file()}


# -- 1, 4: scaffold never overwrites a readable, tampered or damaged file ----------------------


def test_scaffold_reports_a_tampered_file_to_your_key_and_keeps_it(repo: Path, key_dir: Path) -> None:
    path = write_encrypted(repo, f"{IC}/db.sops.yaml", secret_yaml("db", "apps", password="real-value"))
    reference(repo, "db.sops.yaml")
    tamper_metadata(path)
    before = path.read_bytes()
    results = {r.path: r for r in repository.scaffold(repo, key_dir, "lab")}
    assert results[path].state == "damaged" and "MAC" in results[path].reason
    assert path.read_bytes() == before  # the real value is still there, recoverable from the MAC-less edit
    done = run_invoke(repo, "secrets.scaffold", "--cluster", "lab")
    assert done.returncode == 1 and "damaged" in done.stdout and path.read_bytes() == before


def test_truncated_file_is_damaged_never_encrypted_again(repo: Path, key_dir: Path) -> None:
    path = write_encrypted(repo, f"{IC}/db.sops.yaml", secret_yaml("db", "apps", password="real-value"))
    reference(repo, "db.sops.yaml")
    truncate_before_metadata(path)
    before = path.read_bytes()
    assert inspect(path).state == "damaged" and "restore it from git" in inspect(path).problem
    encrypted = run_invoke(repo, "secrets.encrypt", "--cluster", "lab")
    assert encrypted.returncode == 1 and "damaged" in encrypted.stderr and "db.sops.yaml" in encrypted.stderr
    assert path.read_bytes() == before
    scaffolded = {r.path: r.state for r in repository.scaffold(repo, key_dir, "lab")}
    assert scaffolded[path] == "damaged" and path.read_bytes() == before
    viewed = run_invoke(repo, "secrets.view", str(path))
    assert viewed.returncode == 1 and "truncated" in viewed.stderr


def test_a_file_encrypted_twice_is_named_as_such(repo: Path, key_dir: Path) -> None:
    path = write_encrypted(repo, f"{IC}/db.sops.yaml", secret_yaml("db", "apps", password="real-value"))
    truncate_before_metadata(path)
    # what following the old advice ("not encrypted; run secrets.encrypt") did: sops encrypts ciphertext
    path.write_text(Sops(repo).encrypt_text(path.read_text(), path))
    assert inspect(path).state == "encrypted"
    viewed = run_invoke(repo, "secrets.view", str(path))
    assert viewed.returncode == 1 and "encrypted twice" in viewed.stderr
    assert "ENC[" not in viewed.stdout


def test_scaffold_rewrites_only_files_encrypted_to_keys_you_do_not_hold(
    repo: Path, key_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = write_encrypted(repo, f"{IC}/mine.sops.yaml", secret_yaml("mine", "apps", a="1"))
    colleague = keystore.create(tmp_path / "colleague.agekey")
    lab = keystore.public_key(key_dir / "lab.agekey")
    rules.set_cluster_recipients(repo, "lab", [colleague.public])
    foreign = write_encrypted(repo, f"{IC}/foreign.sops.yaml", secret_yaml("foreign", "apps", b="2"))
    rules.set_cluster_recipients(repo, "lab", [lab])
    reference(repo, "mine.sops.yaml", "foreign.sops.yaml", "missing.sops.yaml")
    kept = foreign.read_bytes()
    # readable through a key command, though no key you hold in a file is among its recipients
    monkeypatch.setenv("SOPS_AGE_KEY_CMD", f"cat {colleague.path} {key_dir / 'lab.agekey'}")
    results = {r.path.name: r for r in repository.scaffold(repo, key_dir, "lab")}
    assert {name: r.state for name, r in results.items()} == {
        "mine.sops.yaml": "ok",
        "foreign.sops.yaml": "kept",
        "missing.sops.yaml": "written",
    }
    assert "--force" in results["foreign.sops.yaml"].reason and foreign.read_bytes() == kept
    monkeypatch.delenv("SOPS_AGE_KEY_CMD")
    results = {r.path.name: r for r in repository.scaffold(repo, key_dir, "lab")}
    assert (
        results["foreign.sops.yaml"].state == "written"
        and colleague.public in results["foreign.sops.yaml"].reason
    )
    assert results["mine.sops.yaml"].state == "ok" and results["missing.sops.yaml"].state == "ok"
    assert file_recipients(foreign) == [lab] and foreign.read_bytes() != kept
    assert decrypts_with(repo, mine, key_dir / "lab.agekey")


# -- 3: any encrypted file takes part, whatever its name ----------------------------------------


def test_rotation_and_rekey_take_every_encrypted_file_whatever_its_name(repo: Path, key_dir: Path) -> None:
    yml = write_encrypted(repo, f"{IC}/a.sops.yml", secret_yaml("a", "apps", k="v1"))
    plain_name = repo / IC / "b-secret.yaml"
    rules_path = repo / ".sops.yaml"
    plain_name.write_text(
        Sops(repo).encrypt_text(secret_yaml("b", "apps", k="v2"), repo / IC / "b.sops.yaml")
    )
    assert rules.rule_for(repo, f"{IC}/b-secret.yaml") is None  # no creation rule matches this name
    assert "\\.sops\\.ya?ml$" in rules_path.read_text()
    journal = rotation.Rotation(repo, key_dir, "lab", offline=True, report=quiet).run()
    new_public = journal.new_public
    for path in (yml, plain_name):
        assert file_recipients(path) == [new_public], path
        assert decrypts_with(repo, path, key_dir / "lab.agekey")
        assert not decrypts_with(repo, path, keystore.archived_keys(key_dir, "lab")[0])
    done = {r.path.name: r.outcome for r in repository.rekey(repo, key_dir, "lab")}
    assert done == {"a.sops.yml": "unchanged", "b-secret.yaml": "no-rule"}


# -- 6: a tampered file is never re-keyed ------------------------------------------------------


def test_rekey_names_every_tampered_file_and_leaves_it_alone(
    repo: Path, key_dir: Path, tmp_path: Path
) -> None:
    files = [
        write_encrypted(repo, f"{IC}/s{i}.sops.yaml", secret_yaml(f"s{i}", "apps", k=f"v{i}"))
        for i in range(9)
    ]
    for path in (files[2], files[6]):
        tamper_metadata(path)
    tampered = {p: p.read_bytes() for p in (files[2], files[6])}
    extra = keystore.create(tmp_path / "extra.agekey")
    rules.set_cluster_recipients(repo, "lab", [keystore.public_key(key_dir / "lab.agekey"), extra.public])
    done = run_invoke(repo, "secrets.rekey", "--cluster", "lab")
    assert done.returncode == 1
    assert "7 file(s) re-keyed, 0 already up to date, 2 not re-keyed" in done.stdout
    assert "2 of 9 file(s) could not be re-keyed" in done.stderr
    for path, before in tampered.items():
        assert path.read_bytes() == before
        assert re.search(rf"tampered\s+{re.escape(str(path.relative_to(repo)))}: its MAC", done.stdout)
    for path in set(files) - set(tampered):
        assert extra.public in file_recipients(path)
    with pytest.raises(Exception, match="damaged"):
        rotation.Rotation(repo, key_dir, "lab", offline=True, report=quiet).run()


# -- 7: keys.generate never strands files; keys.import restores a key --------------------------


def test_generate_refuses_to_replace_a_recipient_files_are_encrypted_to(repo: Path, key_dir: Path) -> None:
    path = write_encrypted(repo, f"{IC}/db.sops.yaml", secret_yaml("db", "apps", password="x"))
    live = keystore.public_key(key_dir / "lab.agekey")
    second_machine = key_dir.parent / "second-machine-keys"
    config_before = (repo / ".sops.yaml").read_bytes()
    with pytest.raises(KeyStoreError) as err:
        keys.generate(repo, second_machine, "lab")
    text = str(err.value)
    assert live in text and "db.sops.yaml" in text and "keys.import --cluster lab" in text
    assert (repo / ".sops.yaml").read_bytes() == config_before and not second_machine.exists()
    # --force adds a new key and keeps the recipient the files need
    forced = keys.generate(repo, second_machine, "lab", force=True)
    assert rules.cluster_recipients(repo, "lab") == [forced.key.public, live]
    assert forced.stale == [path]


def test_generate_replaces_a_placeholder_recipient(repo: Path, key_dir: Path, tmp_path: Path) -> None:
    throwaway = keystore.create(tmp_path / "throwaway.agekey")
    rules.set_cluster_recipients(repo, "lab", [throwaway.public])
    write_encrypted(repo, f"{IC}/db.sops.yaml", secret_yaml("db", "apps", password="x"))
    config = repo / ".sops.yaml"
    config.write_text(config.read_text().replace(throwaway.public, f"{throwaway.public} # placeholder"))
    assert rules.placeholder_recipients(repo) == {throwaway.public}
    fresh = keys.generate(repo, tmp_path / "fresh-keys", "lab")
    assert rules.cluster_recipients(repo, "lab") == [fresh.key.public]
    assert "placeholder" not in config.read_text()  # the comment went with the recipient it described


def test_force_keeps_extra_recipients_and_archives_the_old_key(
    repo: Path, key_dir: Path, tmp_path: Path
) -> None:
    old = keystore.public_key(key_dir / "lab.agekey")
    backup = keystore.create(tmp_path / "backup.agekey")
    rules.set_cluster_recipients(repo, "lab", [old, backup.public])
    done = keys.generate(repo, key_dir, "lab", force=True)
    assert rules.cluster_recipients(repo, "lab") == [done.key.public, backup.public]
    assert done.archived is not None and keystore.public_key(done.archived) == old


def test_the_shipped_rules_mark_their_throwaway_keys_as_placeholders() -> None:
    shipped = rules.placeholder_recipients(REPO)
    for cluster in ("lab", "phx"):
        assert set(rules.cluster_recipients(REPO, cluster)) <= shipped


def test_import_brings_a_backup_key_into_the_store(repo: Path, key_dir: Path, tmp_path: Path) -> None:
    path = write_encrypted(repo, f"{IC}/db.sops.yaml", secret_yaml("db", "apps", password="x"))
    backup = tmp_path / "backup-lab.txt"
    backup.write_text((key_dir / "lab.agekey").read_text())
    fresh_store = tmp_path / "second-machine"
    done = run_invoke(repo, "keys.import", str(backup), "--cluster", "lab")
    assert done.returncode == 0, done.stderr  # the repository's key store has this key: nothing to do
    assert key_secret(backup) not in done.stdout + done.stderr
    imported = keys.import_key(repo, fresh_store, "lab", backup)
    stored = fresh_store / "lab.agekey"
    assert imported.key.path == stored and stat_mode(stored) == 0o600
    assert imported.config_changed is False and imported.stale == []
    assert decrypts_with(repo, path, stored)
    other = keystore.create(tmp_path / "other.agekey")
    with pytest.raises(KeyStoreError, match="different key"):
        keys.import_key(repo, fresh_store, "lab", other.path)
    with pytest.raises(KeyStoreError, match="still encrypted to"):
        keys.import_key(repo, tmp_path / "third", "lab", other.path)
    two = tmp_path / "two.txt"
    two.write_text(backup.read_text() + other.path.read_text())
    with pytest.raises(KeyStoreError, match="2 age identities"):
        keys.import_key(repo, tmp_path / "fourth", "lab", two)


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_show_exits_non_zero_when_it_lists_a_problem(repo: Path, key_dir: Path, tmp_path: Path) -> None:
    ok = run_invoke(repo, "keys.show")
    assert ok.returncode == 0, ok.stderr
    rules.set_cluster_recipients(repo, "lab", [keystore.create(tmp_path / "x.agekey").public])
    bad = run_invoke(repo, "keys.show")
    assert bad.returncode == 1 and "problem:" in bad.stdout and "lab" in bad.stderr


# -- 8: updatekeys never leaves a cut file; one rotation or rekey at a time --------------------


def _sops_children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if b"updatekeys" in cmdline and ppid != 0 and _descends(ppid, parent):
            found.append(int(entry.name))
    return found


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


@pytest.mark.parametrize("delay", [0.0, 0.004, 0.015])
def test_sops_killed_during_updatekeys_leaves_every_file_whole(
    repo: Path, key_dir: Path, tmp_path: Path, delay: float
) -> None:
    files = [
        write_encrypted(repo, f"{IC}/s{i:02d}.sops.yaml", secret_yaml(f"s{i}", "apps", k="v" * 4000))
        for i in range(12)
    ]
    before = {p: p.read_bytes() for p in files}
    inodes = {p: p.stat().st_ino for p in files}
    extra = keystore.create(tmp_path / "extra.agekey")
    rules.set_cluster_recipients(repo, "lab", [keystore.public_key(key_dir / "lab.agekey"), extra.public])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "secrets.rekey", "--cluster", "lab"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    killed = 0
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not killed:
        children = _sops_children(proc.pid)
        if children:
            time.sleep(delay)
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
    proc.communicate(timeout=60)
    assert killed, "no sops updatekeys process was seen"
    for path in files:  # each file: the old content or a complete new one, never a cut one
        assert path.read_bytes() == before[path] or extra.public in file_recipients(path)
        if path.read_bytes() != before[path]:  # written elsewhere and renamed over, not rewritten in place
            assert path.stat().st_ino != inodes[path]
        assert inspect(path).state == "encrypted"
        assert decrypts_with(repo, path, key_dir / "lab.agekey")
    assert not list((repo / ".fluxops").glob("staging-*"))  # the staged copies went with the run


def test_two_rotations_cannot_run_at_once(repo: Path, key_dir: Path) -> None:
    write_encrypted(repo, f"{IC}/db.sops.yaml", secret_yaml("db", "apps", password="x"))
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with exclusive(keystore.lock_path(key_dir), "keys.rotate --cluster lab"):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        second = run_invoke(repo, "keys.rotate", "--cluster", "lab", "--offline")
        assert second.returncode == 1
        assert f"keys.rotate --cluster lab (pid {os.getpid()}" in second.stderr
        assert not rotation.journal_path(key_dir, "lab").exists()
        rekey = run_invoke(repo, "secrets.rekey")
        assert rekey.returncode == 1 and "holds" in rekey.stderr
        with pytest.raises(LockedError):
            repository.rekey(repo, key_dir)
    finally:
        release.set()
        holder.join()
    assert rotation.Rotation(repo, key_dir, "lab", offline=True, report=quiet).run().finished


# -- 13: messages name every failing file and keep sops' own words -----------------------------


def test_sops_failures_say_what_happened_without_echoing_macs(repo: Path, key_dir: Path) -> None:
    path = write_encrypted(repo, f"{IC}/db.sops.yaml", secret_yaml("db", "apps", password="x"))
    text = path.read_text()
    value = re.search(r"password: (ENC\[AES256_GCM,data:)([^,]+)", text)
    assert value is not None
    data = value.group(2)
    flipped = ("B" if data[0] == "A" else "A") + data[1:]  # one byte of ciphertext changed
    path.write_text(text.replace(value.group(0), value.group(1) + flipped))
    key = keys.decryption_key(key_dir, "lab")
    verdict = Sops(repo).verify(path, key)
    assert verdict.state == "tampered-value" and "restore it from git" in verdict.detail
    with pytest.raises(SopsError) as err:
        Sops(repo).decrypt(path, key)
    assert "db.sops.yaml" in str(err.value) and "computed" not in str(err.value).lower()
    missing = Sops(repo).verify(path, keys.decryption_key(key_dir, "phx"))
    assert missing.state in ("no-key", "tampered")
