"""The one secret checker: encrypted by content, keys wherever git looks, MACs verified, clear values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest

from fluxops import settings
from fluxops.errors import ConfigError
from fluxops.secrets import check as secrets_check
from fluxops.secrets import keystore
from fluxops.secrets.sops import Sops, binary
from tests.unit.sops_testing import REPO, run_invoke, secret_yaml, write_encrypted

LAB = "k8s/clusters/lab/infrastructure-config"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
RULES = """\
creation_rules:
  - path_regex: ^k8s/clusters/lab/.*\\.sops\\.ya?ml$
    encrypted_regex: ^(data|stringData)$
    age: {lab}
  - path_regex: ^k8s/clusters/phx/.*\\.sops\\.ya?ml$
    encrypted_regex: ^(data|stringData)$
    age: {phx}
"""


@pytest.fixture(autouse=True)
def no_environment_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the key store of the test decrypts (no operator key from the environment)."""
    for name in ("SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "INVOKE_FLUXOPS_KEY_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def yml_rules(repo: Path, key_dir: Path) -> Path:
    """The scratch repository with rules that also cover ``*.sops.yml``."""
    publics = {c: keystore.public_key(keystore.key_path(key_dir, c)) for c in ("lab", "phx")}
    (repo / ".sops.yaml").write_text(RULES.format(**publics))
    return repo


def found(root: Path, key_dir: Path | None = None) -> dict[str, list[secrets_check.Finding]]:
    """The findings of a check, by file."""
    grouped: dict[str, list[secrets_check.Finding]] = {}
    for finding in secrets_check.check(root, key_dir):
        grouped.setdefault(finding.path, []).append(finding)
    return grouped


def bech32(hrp: str, data: bytes) -> str:
    """BIP-173 bech32 of ``data`` under ``hrp``, upper case as age writes identities."""
    values: list[int] = []
    acc = bits = 0
    for byte in data:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            values.append((acc >> bits) & 31)
    if bits:
        values.append((acc << (5 - bits)) & 31)
    low = hrp.lower()
    check = 1
    for value in [*(ord(c) >> 5 for c in low), 0, *(ord(c) & 31 for c in low), *values, 0, 0, 0, 0, 0, 0]:
        top, check = check >> 25, (check & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            check ^= gen if (top >> i) & 1 else 0
    check ^= 1
    checksum = [(check >> 5 * (5 - i)) & 31 for i in range(6)]
    return (low + "1" + "".join(BECH32[v] for v in values + checksum)).upper()


def encrypted_text(repo: Path, plaintext: str, cluster: str = "lab") -> str:
    """``plaintext`` encrypted by the real sops with the cluster's creation rule."""
    return Sops(repo).encrypt_text(plaintext, repo / f"k8s/clusters/{cluster}/x.sops.yaml")


# -- encrypted by content, whatever the name ----------------------------------------------------


def test_sops_yml_passes_when_encrypted_and_fails_when_plain(yml_rules: Path, key_dir: Path) -> None:
    repo = yml_rules
    write_encrypted(repo, f"{LAB}/token.sops.yml", secret_yaml("token", token="s3cret"))
    assert found(repo, key_dir) == {}
    (repo / LAB / "twin.sops.yml").write_text(secret_yaml("twin", token="s3cret"))
    [twin] = found(repo, key_dir)[f"{LAB}/twin.sops.yml"]
    assert twin.code == "sops-unencrypted"
    assert "named *.sops.yml but not encrypted" in twin.reason and "secrets.encrypt" in twin.reason


def test_encrypted_secret_yaml_without_sops_in_its_name_passes(yml_rules: Path, key_dir: Path) -> None:
    repo = yml_rules
    path = write_encrypted(repo, f"{LAB}/x.sops.yaml", secret_yaml("db", password="s3cret"))
    path.rename(repo / LAB / "secret.yaml")  # sops wrote it; the name is the user's
    json_doc = '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "j"}, "data": {"k": "dg=="}}\n'
    source = repo / "plain.json"
    source.write_text(json_doc)
    lab_key = keystore.public_key(keystore.key_path(key_dir, "lab"))
    config = repo.parent / "json-rules.yaml"
    config.write_text(f"creation_rules:\n  - encrypted_regex: ^(data|stringData)$\n    age: {lab_key}\n")
    result = subprocess.run(
        [binary(), "--config", str(config), "encrypt", str(source)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"},
    )
    (repo / LAB / "secret.json").write_text(result.stdout)
    source.unlink()
    report = secrets_check.scan(repo, key_dir)
    assert report.findings == []
    assert report.encrypted == 2 and report.verified == 2
    (repo / LAB / "leak.json").write_text(json_doc)
    [leak] = found(repo, key_dir)[f"{LAB}/leak.json"]
    assert leak.code == "plaintext-secret" and "plaintext Secret j" in leak.reason


def test_truncated_file_is_damaged_never_encrypt_it(repo: Path, key_dir: Path) -> None:
    path = write_encrypted(repo, f"{LAB}/cut.sops.yaml", secret_yaml("cut", token="s3cret"))
    text = path.read_text()
    path.write_text(text[: text.index("sops:")])
    [finding] = found(repo, key_dir)[f"{LAB}/cut.sops.yaml"]
    assert finding.code == "secret-damaged" and finding.reason.startswith("damaged:")
    assert f"restore it from git (`git checkout -- {LAB}/cut.sops.yaml`)" in finding.reason
    assert "secrets.encrypt" not in finding.reason


def test_pgp_only_file_is_named_as_such(repo: Path, key_dir: Path) -> None:
    path = write_encrypted(repo, f"{LAB}/gpg.sops.yaml", secret_yaml("gpg", token="s3cret"))
    text = path.read_text()
    head, tail = text.split("    age:\n", 1)
    rest = tail[tail.index("    lastmodified:") :]
    pgp = "    pgp:\n        - fp: 0123456789ABCDEF0123456789ABCDEF01234567\n          enc: x\n"
    path.write_text(head + pgp + rest)
    [finding] = found(repo)[f"{LAB}/gpg.sops.yaml"]
    assert finding.code == "sops-recipients"
    assert "encrypted only to pgp key(s), no age recipient" in finding.reason
    assert "recipients none" not in finding.reason


# -- values sops leaves in clear ----------------------------------------------------------------


def test_values_sops_leaves_in_clear_pass(repo: Path, key_dir: Path) -> None:
    plaintext = secret_yaml("mixed", token="s3cret", empty='""', nothing="null", blank="{}")
    write_encrypted(repo, f"{LAB}/mixed.sops.yaml", plaintext)
    text = (repo / LAB / "mixed.sops.yaml").read_text()
    assert 'empty: ""' in text and "nothing: null" in text  # sops left them as they were
    (repo / "k8s/clusters/lab/unset.yaml").write_text(secret_yaml("unset", password='""'))
    assert found(repo, key_dir) == {}
    task = run_invoke(repo, "secrets.check")
    assert task.returncode == 0 and "secrets: ok" in task.stdout, task.stdout + task.stderr


# -- private keys -------------------------------------------------------------------------------


def test_key_in_a_hidden_folder_is_found_and_never_echoed(repo: Path) -> None:
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    identity = str(pyrage.x25519.Identity.generate())
    (repo / ".backup").mkdir()
    (repo / ".backup/lab-key.txt").write_text(f"# created: today\n{identity}\n")
    (repo / ".gitignore").write_text("*.agekey\n")
    (repo / "ignored.agekey").write_text(f"{identity}\n")  # git would not commit it
    findings = secrets_check.check(repo)
    keys = [f for f in findings if f.code == "private-key"]
    assert [(f.path, f.line) for f in keys] == [(".backup/lab-key.txt", 2)]
    assert identity not in "\n".join(map(str, findings))
    hook = subprocess.run(
        [sys.executable, "-m", "fluxops.secrets.check", str(repo)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert hook.returncode == 1 and ".backup/lab-key.txt:2: holds an age private key" in hook.stderr
    assert identity not in hook.stdout + hook.stderr


def test_post_quantum_key_is_found(repo: Path) -> None:
    pq = bech32(keystore.SECRET_PREFIX + "PQ-", os.urandom(32))
    assert len(pq) == len(keystore.SECRET_PREFIX) + len("PQ-1") + 58
    classic = bech32(keystore.SECRET_PREFIX, os.urandom(32))
    pyrage.x25519.Identity.from_str(classic)  # the encoder is right: age accepts its output
    (repo / "notes.env").write_text(f"BACKUP_IDENTITY={pq}\n")
    (repo / "fine.txt").write_text(f"{keystore.SECRET_PREFIX}PQ-1...\n")  # a mention, not a key
    findings = [f for f in secrets_check.check(repo) if f.code == "private-key"]
    assert [f.path for f in findings] == ["notes.env"]
    assert pq not in "\n".join(map(str, findings))


# -- YAML that does not parse -------------------------------------------------------------------


def test_unparsable_yaml_is_a_finding_except_in_helm_chart_templates(repo: Path) -> None:
    templated = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData: {{ password }}\n"
    (repo / "k8s/clusters/lab/db-secret.yaml").write_text(templated)
    chart = repo / "charts/db"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: db\nversion: 0.1.0\n")
    (chart / "templates/secret.yaml").write_text(templated)
    (chart / "templates/ok.yaml").write_text(
        "kind: Secret\nmetadata:\n  name: db\nstringData:\n  password: '{{ .Values.password }}'\n"
    )
    (repo / "templates").mkdir()
    (repo / "templates/secret.yaml").write_text(templated)  # no Chart.yaml above: not Helm's
    findings = found(repo)
    assert sorted(findings) == ["k8s/clusters/lab/db-secret.yaml", "templates/secret.yaml"]
    [finding] = findings["k8s/clusters/lab/db-secret.yaml"]
    assert finding.code == "yaml" and "not valid YAML" in finding.reason


def test_yaml_kustomize_reads_is_no_finding(repo: Path) -> None:
    # `=` as a value (PyYAML's and ruamel's 'value' tag), a custom tag and a redefined anchor: kustomize
    # builds all three, and an AlertmanagerConfig naming a Secret must not read as broken YAML
    config = (
        "apiVersion: monitoring.coreos.com/v1alpha1\nkind: AlertmanagerConfig\nmetadata:\n  name: a\n"
        "spec:\n  receivers:\n    - name: x\n      pushoverConfigs:\n"
        "        - token: {key: t, name: pushover}\n"
        "          userKey: &k {key: u, name: Secret}\n  inhibitRules:\n    - sourceMatch:\n"
        "        - {name: severity, value: critical, matchType: =}\n      other: &k !custom tag\n"
    )
    (repo / "k8s/clusters/lab/alertmanagerconfig.yaml").write_text(config)
    assert "k8s/clusters/lab/alertmanagerconfig.yaml" not in found(repo)
    (repo / "k8s/clusters/lab/alertmanagerconfig.yaml").write_text(config + "  bad: [\n")
    [finding] = found(repo)["k8s/clusters/lab/alertmanagerconfig.yaml"]
    assert finding.code == "yaml"


# -- decrypting where the key is at hand ---------------------------------------------------------


def _flip_first_ciphertext_char(text: str, after: str) -> str:
    start = text.index(after) + len(after)
    return text[:start] + ("A" if text[start] != "A" else "B") + text[start + 1 :]


def test_tampered_files_are_reported_when_the_key_is_at_hand(repo: Path, key_dir: Path) -> None:
    dated = write_encrypted(repo, f"{LAB}/dated.sops.yaml", secret_yaml("dated", token="s3cret"))
    dated.write_text(dated.read_text().replace('lastmodified: "2', 'lastmodified: "1', 1))
    value = write_encrypted(repo, f"{LAB}/value.sops.yaml", secret_yaml("value", token="s3cret"))
    value.write_text(_flip_first_ciphertext_char(value.read_text(), "token: ENC[AES256_GCM,data:"))
    renamed = write_encrypted(repo, f"{LAB}/renamed.sops.yaml", secret_yaml("renamed", token="s3cret"))
    renamed.write_text(renamed.read_text().replace("name: renamed", "name: other"))
    write_encrypted(repo, f"{LAB}/fine.sops.yaml", secret_yaml("fine", token="s3cret"))
    assert found(repo) == {}  # no key at hand: the readable parts are fine
    findings = found(repo, key_dir)
    assert sorted(findings) == [f"{LAB}/{n}.sops.yaml" for n in ("dated", "renamed", "value")]
    for name, words in (("dated", "MAC does not verify"), ("renamed", "MAC does not verify")):
        [finding] = findings[f"{LAB}/{name}.sops.yaml"]
        assert finding.code == "secret-tampered" and words in finding.reason
        assert "restore it from git" in finding.reason and "File has" not in finding.reason
    [finding] = findings[f"{LAB}/value.sops.yaml"]
    assert finding.code == "secret-tampered" and "encrypted value does not verify" in finding.reason
    task = run_invoke(repo, "secrets.check")
    assert task.returncode == 1 and "3 secret problem(s) found" in task.stderr
    assert f"{LAB}/dated.sops.yaml: tampered: its MAC does not verify" in task.stdout


def test_file_encrypted_twice_is_reported(repo: Path, key_dir: Path) -> None:
    once = encrypted_text(repo, secret_yaml("twice", token="s3cret"))
    twice = encrypted_text(repo, once[: once.index("sops:")])  # its ciphertext taken as plaintext
    (repo / LAB / "twice.sops.yaml").write_text(twice)
    assert found(repo) == {}
    [finding] = found(repo, key_dir)[f"{LAB}/twice.sops.yaml"]
    assert finding.code == "secret-encrypted-twice" and "restore it from git" in finding.reason


# -- the key store ------------------------------------------------------------------------------


def test_key_store_inside_the_repository_is_refused(repo: Path, key_dir: Path) -> None:
    sandbox = {"inventory": "inventory/sandbox.yaml", "dir": ".sandbox"}
    section = {"inventory": "inventory/hosts.yaml", "key_dir": ".keys", "sandbox": sandbox}
    with pytest.raises(ConfigError, match="inside the repository"):
        settings.load(section, repo)
    assert settings.load({**section, "key_dir": str(key_dir)}, repo).key_dir == key_dir
    [finding] = secrets_check.check(repo, repo / ".keys")
    assert (finding.path, finding.code) == (".keys", "key-store")
    invoke_yaml = repo / "invoke.yaml"
    invoke_yaml.write_text(invoke_yaml.read_text().replace(f"key_dir: {key_dir}", "key_dir: .keys"))
    task = run_invoke(repo, "secrets.check")
    assert task.returncode == 1 and "fluxops.key_dir" in task.stderr
    assert "inside the repository" in task.stderr
    hook = subprocess.run(
        [sys.executable, "-m", "fluxops.secrets.check", str(repo)], capture_output=True, text=True, cwd=REPO
    )
    assert hook.returncode == 1 and ".keys: the age key store (fluxops.key_dir) is inside" in hook.stderr


# -- output --------------------------------------------------------------------------------------


def test_closed_stdout_gives_no_traceback_and_the_right_exit_code(repo: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for expected in (0, 1):
        if expected:
            (repo / LAB / "leak.yaml").write_text(secret_yaml("leak", token="s3cret"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", "secrets.check"],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `| head -0`: the reader is gone before anything is written
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == expected, stderr
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_invalid_creation_rule_regex_is_a_finding(repo: Path) -> None:
    config = repo / ".sops.yaml"
    config.write_text(config.read_text() + "  - path_regex: k8s/clusters/(broken\n    age: age1x\n")
    [finding] = secrets_check.check(repo)
    assert (finding.path, finding.code) == (".sops.yaml", "sops-config")
    assert "path_regex 'k8s/clusters/(broken' is not a valid regular expression" in finding.reason
    assert finding.keys == ("creation_rules", 2, "path_regex")
