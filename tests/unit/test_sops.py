"""The sops adapter with the real binary: round trips, idempotence, key errors, and no key leaks."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fluxops.errors import FluxopsError, KeyStoreError, SopsError
from fluxops.masking import reveal
from fluxops.secrets import keys, keystore, repository, rotation, rules, sops
from fluxops.secrets.encrypted import file_recipients
from fluxops.secrets.sops import Sops, parallel
from fluxops.shell import LocalShell
from tests.unit.sops_testing import (
    decrypts_with,
    key_secret,
    make_repo,
    secret_yaml,
    setup_cluster_keys,
    write_encrypted,
)

COMMENTED = """\
# cloudflare token for traefik
apiVersion: v1
kind: Secret
metadata:
  name: cloudflare # the Secret's name
  namespace: traefik
stringData:
  # the token itself
  zeta: one
  alpha: two
  middle: three
"""


@pytest.fixture
def repo(tmp_path: Path, key_dir: Path) -> Path:
    """A scratch repository whose tests set up keys themselves."""
    return make_repo(tmp_path / "repo", key_dir)


def test_round_trip_keeps_comments_and_key_order(repo: Path, key_dir: Path) -> None:
    setup_cluster_keys(repo, key_dir)
    path = repo / "k8s/clusters/lab/infrastructure-config/cf.sops.yaml"
    path.write_text(COMMENTED)
    assert repository.encrypt(repo, "lab").changed == [path]
    encrypted = path.read_text()
    assert "one" not in encrypted.replace("ENC[", "")  # values are ciphertext
    assert "zeta: ENC[" in encrypted and "name: cloudflare" in encrypted
    plain = repository.view(repo, key_dir, path).reveal()
    for comment in ("# cloudflare token for traefik", "# the Secret's name", "# the token itself"):
        assert comment in plain
    order = [line.split(":")[0].strip() for line in plain.splitlines() if line.startswith("    ")]
    assert [k for k in order if k in {"zeta", "alpha", "middle"}] == ["zeta", "alpha", "middle"]
    assert "zeta: one" in plain and "alpha: two" in plain


def test_encrypt_is_idempotent(repo: Path, key_dir: Path) -> None:
    setup_cluster_keys(repo, key_dir)
    lab = repo / "k8s/clusters/lab/infrastructure-config/a.sops.yaml"
    phx = repo / "k8s/clusters/phx/infrastructure-config/b.sops.yaml"
    lab.write_text(secret_yaml("a", token="x"))
    phx.write_text(secret_yaml("b", token="y"))
    assert sorted(repository.encrypt(repo).changed) == sorted([lab, phx])
    first = {p: p.read_bytes() for p in (lab, phx)}
    assert repository.encrypt(repo).changed == []
    assert repository.encrypt(repo, "lab").changed == []
    assert {p: p.read_bytes() for p in (lab, phx)} == first
    assert Sops(repo).filestatus(lab) is True
    assert file_recipients(lab) == [keystore.public_key(key_dir / "lab.agekey")]


def test_filestatus_says_plaintext(repo: Path, key_dir: Path) -> None:
    setup_cluster_keys(repo, key_dir)
    plain = repo / "k8s/clusters/lab/infrastructure-config/p.sops.yaml"
    plain.write_text(secret_yaml("p", a="b"))
    assert Sops(repo).filestatus(plain) is False


def test_wrong_key_error_names_cluster_and_key_file(repo: Path, key_dir: Path, tmp_path: Path) -> None:
    setup_cluster_keys(repo, key_dir)
    path = write_encrypted(
        repo, "k8s/clusters/lab/infrastructure-config/s.sops.yaml", secret_yaml("s", k="v")
    )
    wrong = keystore.create(tmp_path / "other" / "lab.agekey").path  # a key that is no recipient
    with pytest.raises(SopsError) as err:
        repository.view(repo, tmp_path / "other", path)
    text = str(err.value)
    assert "cluster lab" in text and str(wrong) in text and "keys.import --cluster lab FILE" in text
    assert keystore.public_key(key_dir / "lab.agekey") in text  # the recipient whose key to restore
    assert err.value.cluster == "lab" and err.value.key_file == str(wrong)
    assert key_secret(wrong) not in text


def test_missing_key_error_names_cluster_key_file_and_fix(repo: Path, key_dir: Path, tmp_path: Path) -> None:
    setup_cluster_keys(repo, key_dir)
    path = write_encrypted(
        repo, "k8s/clusters/lab/infrastructure-config/s.sops.yaml", secret_yaml("s", k="v")
    )
    empty = tmp_path / "nokeys"
    with pytest.raises(KeyStoreError) as err:
        repository.view(repo, empty, path)
    text = str(err.value)
    assert "cluster lab" in text and str(empty / "lab.agekey") in text
    # a second machine without the key: restore the key the rule names, never generate a new one
    assert keystore.public_key(key_dir / "lab.agekey") in text
    assert "invoke keys.import --cluster lab FILE" in text and "SOPS_AGE_KEY_FILE" in text
    assert "invoke keys.generate --cluster lab`" not in text


def test_environment_key_file_comes_first(
    repo: Path, key_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = setup_cluster_keys(repo, key_dir)
    path = write_encrypted(
        repo, "k8s/clusters/lab/infrastructure-config/s.sops.yaml", secret_yaml("s", k="v")
    )
    moved = tmp_path / "elsewhere.agekey"
    files["lab"].rename(moved)
    with pytest.raises(KeyStoreError):
        repository.view(repo, key_dir, path)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(moved))
    assert "k: v" in repository.view(repo, key_dir, path).reveal()
    assert keys.decryption_key(key_dir, "lab").key_file.startswith(str(moved))


def test_parallel_is_bounded_by_the_cores() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def work(_: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return _

    assert parallel(work, list(range(20))) == list(range(20))
    assert 1 <= peak <= (os.cpu_count() or 1)


def test_parallel_reports_every_failing_file() -> None:
    def work(n: int) -> int:
        if n % 2:
            raise SopsError(f"file-{n} failed", cluster="lab")
        return n

    with pytest.raises(SopsError) as err:
        parallel(work, [1, 2, 3])
    assert (
        "2 of 3 files failed" in str(err.value) and "file-1" in str(err.value) and "file-3" in str(err.value)
    )


def test_private_keys_never_reach_argv_logs_or_errors(
    repo: Path,
    key_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[dict[str, Any]] = []
    real_run = LocalShell.run

    def recording_run(self: LocalShell, argv: Any, **kwargs: Any) -> Any:
        calls.append({"argv": [os.fspath(a) for a in argv], "env": dict(kwargs.get("env") or {})})
        return real_run(self, argv, **kwargs)

    monkeypatch.setattr(LocalShell, "run", recording_run)
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []

    setup_cluster_keys(repo, key_dir)
    repository.new(repo, key_dir, "lab", "cf", "traefik", literals=["token=s3cr3t-value"])
    repository.new(repo, key_dir, "phx", "cf", "traefik", literals=["token=other"])
    (repo / "k8s/clusters/lab/infrastructure-config/p.sops.yaml").write_text(secret_yaml("p", a="b"))
    repository.encrypt(repo)
    cf = repo / "k8s/clusters/lab/infrastructure-config/cf.sops.yaml"
    repository.view(repo, key_dir, cf)
    for bad_dir in (tmp_path / "none", key_dir / "wrong"):
        if bad_dir.name == "wrong":
            keystore.create(bad_dir / "lab.agekey")  # a key that is no recipient
        try:
            repository.view(repo, bad_dir, cf)
        except FluxopsError as exc:
            errors.append(str(exc))
    rotation.Rotation(
        repo, key_dir, "lab", offline=True, report=lambda m: logging.getLogger("t").info(m)
    ).run()

    sops_calls = [c for c in calls if c["argv"][0] == sops.binary()]
    assert len(sops_calls) >= 10
    secrets = [key_secret(p) for p in key_dir.rglob("*.agekey")]
    assert len(secrets) >= 4  # lab (rotated + archived), phx, the wrong key
    for call in sops_calls:
        assert "--version" not in call["argv"]
        assert "--config" in call["argv"]
        for value in [*call["argv"], *map(reveal, call["env"].values())]:
            assert "AGE-SECRET-KEY" not in value
        for name, value in call["env"].items():
            if name == "SOPS_AGE_KEY_FILE":
                assert Path(value).is_absolute() and value.endswith(".agekey")  # a path, never the key
    assert errors and len(errors) == 2
    texts = errors + [r.getMessage() for r in caplog.records]
    for text in texts:
        for secret in secrets:
            assert secret not in text
        assert "AGE-SECRET-KEY" not in text
    assert decrypts_with(repo, cf, key_dir / "lab.agekey")
    assert not list(repo.rglob("*.tmp"))
    assert "s3cr3t-value" not in "".join(p.read_text() for p in repo.rglob("*.yaml"))


def test_rekey_adds_a_recipient_to_every_file_in_batches(repo: Path, key_dir: Path, tmp_path: Path) -> None:
    setup_cluster_keys(repo, key_dir)
    files = [
        write_encrypted(
            repo, f"k8s/clusters/lab/infrastructure-config/s{i}.sops.yaml", secret_yaml(f"s{i}", k="v")
        )
        for i in range(7)
    ]
    extra = keystore.create(tmp_path / "extra.agekey")
    lab = keystore.public_key(key_dir / "lab.agekey")
    rules.set_cluster_recipients(repo, "lab", [lab, extra.public])
    (repo / "k8s/clusters/lab/infrastructure-config/s3.sops.yaml").write_text("broken: [\n")
    with pytest.raises(SopsError) as err:
        Sops(repo).updatekeys_all(files, keys.decryption_key(key_dir, "lab"), batch=3)
    assert "s3.sops.yaml" in str(err.value)
    files[3].write_text(Sops(repo).encrypt_text(secret_yaml("s3", k="v"), files[3]))
    for path in [*files[:3], *files[4:]]:  # the failing file did not stop the others
        assert set(file_recipients(path)) == {lab, extra.public}
    done = repository.rekey(repo, key_dir, "lab")
    assert [(r.path, r.outcome) for r in done] == [(f, "unchanged") for f in files]
    for path in files:
        assert set(file_recipients(path)) == {lab, extra.public}
        assert decrypts_with(repo, path, extra.path)
