"""Secret manifests: new, scaffold, view, and the plaintext guard against a hostile corpus."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fluxops import clusters
from fluxops.errors import FluxopsError, SopsError
from fluxops.secrets import check as secrets_check
from fluxops.secrets import keystore, repository
from fluxops.secrets.encrypted import file_recipients, is_encrypted
from fluxops.secrets.sops import Sops
from tests.unit.sops_testing import (
    REPO,
    decrypts_with,
    make_repo,
    run_invoke,
    secret_yaml,
    setup_cluster_keys,
    write_encrypted,
)

IC = "k8s/clusters/{}/infrastructure-config"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_new_writes_only_ciphertext_and_references_it(repo: Path, key_dir: Path, tmp_path: Path) -> None:
    cert = tmp_path / "ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\xff\x00\xfe")
    done = repository.new(
        repo,
        key_dir,
        "lab",
        "cloudflare",
        "traefik",
        literals=["api-token=tok-123456789", "email=me@example.org"],
        files=[f"ca.pem={cert}", f"blob={blob}"],
    )
    path = repo / IC.format("lab") / "cloudflare.sops.yaml"
    assert done.path == path and done.added
    text = path.read_text()
    assert is_encrypted(path)
    for plain in ("tok-123456789", "me@example.org", "MIIBfake"):
        assert plain not in "".join(p.read_text(errors="replace") for p in repo.rglob("*") if p.is_file())
    assert "api-token: ENC[" in text and "name: cloudflare" in text
    plain = YAML(typ="safe").load(repository.view(repo, key_dir, path).reveal())
    assert plain["metadata"] == {"name": "cloudflare", "namespace": "traefik"}
    assert plain["stringData"]["api-token"] == "tok-123456789"
    assert plain["stringData"]["ca.pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert base64.b64decode(plain["data"]["blob"]) == b"\xff\x00\xfe"
    kustomization = (repo / IC.format("lab") / "kustomization.yaml").read_text()
    assert "# secrets of this phase" in kustomization
    assert kustomization.rstrip().endswith("- cloudflare.sops.yaml")
    assert file_recipients(path) == [keystore.public_key(key_dir / "lab.agekey")]
    assert not decrypts_with(repo, path, key_dir / "phx.agekey")
    assert secrets_check.check(repo) == []


FLUX_WEB = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: web
  namespace: flux-system
spec:
  path: ./k8s/clusters/lab/apps/web
  targetNamespace: web
  decryption:
    provider: sops
    secretRef:
      name: sops-age
"""


def test_new_goes_to_the_folder_flux_decrypts_for_its_namespace(repo: Path, key_dir: Path) -> None:
    """Flux decrypts only what a Kustomization with spec.decryption applies: the default folder is the
    one that decrypts into the Secret's namespace; for a namespace none does, nothing is written."""
    web = repo / "k8s/clusters/lab/apps/web"
    web.mkdir(parents=True)
    kustomize = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    (web / "kustomization.yaml").write_text(kustomize)
    (repo / "k8s/clusters/lab/apps/ks.yaml").write_text(FLUX_WEB)
    before = snapshot(repo)
    with pytest.raises(FluxopsError) as refused:
        repository.new(repo, key_dir, "lab", "db", "other", literals=["k=v"])
    message = str(refused.value)
    assert "no folder of cluster lab that Flux decrypts applies into namespace other" in message
    assert "k8s/clusters/lab/apps/web (web)" in message and "--dest" in message
    assert snapshot(repo) == before
    done = repository.new(repo, key_dir, "lab", "db", "web", literals=["k=v"])
    assert done.path == web / "db.sops.yaml" and done.kustomization == web / "kustomization.yaml"
    assert is_encrypted(done.path) and "- db.sops.yaml" in done.kustomization.read_text()


def test_new_with_dest_in_a_subfolder_uses_the_nearest_kustomization(repo: Path, key_dir: Path) -> None:
    dest = f"{IC.format('phx')}/twingate/connector.sops.yaml"
    done = repository.new(repo, key_dir, "phx", "twingate", "twingate", literals=["t=1"], dest=dest)
    assert done.path == repo / dest
    assert done.kustomization == repo / IC.format("phx") / "kustomization.yaml"
    assert "- twingate/connector.sops.yaml" in done.kustomization.read_text()
    again = repository.new(
        repo, key_dir, "phx", "twingate", "twingate", literals=["t=2"], dest=dest, force=True
    )
    assert not again.added
    assert done.kustomization.read_text().count("connector.sops.yaml") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"cluster": "nope"}, "unknown cluster 'nope'"),
        ({"literals": []}, "--from-literal"),
        ({"literals": ["novalue"]}, "KEY=VALUE"),
        ({"files": ["k=/does/not/exist"]}, "/does/not/exist"),
        ({"dest": "k8s/clusters/phx/infrastructure-config/x.sops.yaml"}, "outside the cluster's tree"),
        ({"dest": "k8s/clusters/lab/infrastructure-config/x.yaml"}, "must end in .sops.yaml"),
        ({"name": "Bad_Name"}, "invalid name"),
    ],
)
def test_new_refuses_bad_input_and_changes_nothing(
    repo: Path, key_dir: Path, args: dict, message: str
) -> None:
    before = snapshot(repo)
    call = {"cluster": "lab", "name": "s", "literals": ["k=v"], **args}
    with pytest.raises(FluxopsError) as err:
        repository.new(
            repo,
            key_dir,
            call["cluster"],
            call["name"],
            "default",
            literals=call["literals"],
            files=call.get("files", []),
            dest=call.get("dest"),
        )
    assert message in str(err.value)
    assert snapshot(repo) == before


def test_new_refuses_to_overwrite_and_leaves_nothing_when_sops_fails(repo: Path, key_dir: Path) -> None:
    repository.new(repo, key_dir, "lab", "s", "default", literals=["k=v"])
    before = snapshot(repo)
    with pytest.raises(FluxopsError, match="already exists"):
        repository.new(repo, key_dir, "lab", "s", "default", literals=["k=v"])
    (repo / ".sops.yaml").write_text("creation_rules: []\n")
    before = snapshot(repo)
    with pytest.raises(SopsError, match="no creation rule"):
        repository.new(repo, key_dir, "lab", "t", "default", literals=["k=v"])
    assert snapshot(repo) == before


def test_scaffold_rewrites_missing_and_foreign_secrets_with_placeholders(
    repo: Path, key_dir: Path, tmp_path: Path
) -> None:
    ic = repo / IC.format("lab")
    mine = write_encrypted(repo, f"{IC.format('lab')}/mine.sops.yaml", secret_yaml("mine", "apps", k="real"))
    foreign_text = (
        "# Cloudflare API token for traefik's DNS challenge\n"
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cloudflare-api\n  namespace: traefik\n"
        "type: Opaque\nstringData:\n  api-token: secret\n  email: a@b.c\ndata:\n  cert: Zm9v\n"
    )
    foreign = ic / "traefik-config" / "cloudflare-secret.sops.yaml"
    foreign.parent.mkdir()
    # encrypted to a key thrown away afterwards, as the shipped files are
    other_root = make_repo(tmp_path / "other", tmp_path / "otherkeys", ("lab",))
    setup_cluster_keys(other_root, tmp_path / "otherkeys", ("lab",))
    foreign.write_text(
        Sops(other_root).encrypt_text(foreign_text, other_root / IC.format("lab") / "x.sops.yaml")
    )
    (ic / "kustomization.yaml").write_text(
        (ic / "kustomization.yaml").read_text()
        + "  - mine.sops.yaml\n"
        + "  - traefik-config/cloudflare-secret.sops.yaml\n"
        + "  - twingate/secret.sops.yaml\n"
    )
    mine_before = mine.read_bytes()

    results = {r.path: r for r in repository.scaffold(repo, key_dir, "lab")}
    assert results[mine].state == "ok" and mine.read_bytes() == mine_before
    assert results[foreign].state == "written" and "do not hold" in results[foreign].reason
    twingate = ic / "twingate" / "secret.sops.yaml"
    assert results[twingate].state == "written" and results[twingate].reason == "missing"

    assert foreign.read_text().startswith("# Cloudflare API token for traefik's DNS challenge\n")
    plain = YAML(typ="safe").load(repository.view(repo, key_dir, foreign).reveal())
    assert plain["metadata"] == {"name": "cloudflare-api", "namespace": "traefik"}
    assert plain["type"] == "Opaque"
    assert plain["stringData"] == {"api-token": "REPLACE_ME", "email": "REPLACE_ME"}
    assert base64.b64decode(plain["data"]["cert"]) == b"REPLACE_ME"
    plain = YAML(typ="safe").load(repository.view(repo, key_dir, twingate).reveal())
    assert plain["metadata"] == {"name": "secret", "namespace": "traefik"}
    assert plain["stringData"] == {"value": "REPLACE_ME"}
    assert secrets_check.check(repo) == []
    again = {r.path: r.state for r in repository.scaffold(repo, key_dir, "lab")}
    assert set(again.values()) == {"ok"}


def hostile_corpus(repo: Path, key_dir: Path) -> dict[str, str]:
    """One file per kind of leak; returns relative path -> expected reason fragment."""
    lab = IC.format("lab")
    (repo / "k8s/clusters/lab/apps").mkdir()
    (repo / "k8s/clusters/lab/apps/leak.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n" + secret_yaml("leak", pw="hunter2")
    )
    (repo / f"{lab}/plain.sops.yaml").write_text(secret_yaml("plain", pw="hunter2"))
    wrong = write_encrypted(repo, f"{IC.format('phx')}/moved.sops.yaml", secret_yaml("moved", pw="x"))
    wrong.rename(repo / f"{lab}/moved.sops.yaml")  # encrypted to phx's key, sitting in lab's tree
    added = write_encrypted(repo, f"{lab}/added.sops.yaml", secret_yaml("added", pw="x"))
    added.write_text(added.read_text().replace("stringData:\n", "stringData:\n    extra: plaintext-added\n"))
    write_encrypted(repo, f"{lab}/fine.sops.yaml", secret_yaml("fine", pw="x"))
    (repo / "docs").mkdir()
    (repo / "docs/example.yml").write_text("kind: Secret\nmetadata:\n  name: doc\ndata:\n  pw: aHVudA==\n")
    (repo / "docs/empty.yml").write_text("kind: Secret\nmetadata:\n  name: none\nstringData:\n  pw: ''\n")
    return {
        "k8s/clusters/lab/apps/leak.yaml": "plaintext Secret leak",
        f"{lab}/plain.sops.yaml": "not encrypted (no sops metadata)",
        f"{lab}/moved.sops.yaml": "its .sops.yaml rule names",
        f"{lab}/added.sops.yaml": "plaintext value at stringData.extra",
        "docs/example.yml": "plaintext Secret doc",
    }


def test_check_catches_every_kind_of_plaintext(repo: Path, key_dir: Path) -> None:
    expected = hostile_corpus(repo, key_dir)
    findings = secrets_check.check(repo)
    got = {f.path: f.reason for f in findings}
    assert set(got) == set(expected), findings
    for path, fragment in expected.items():
        assert fragment in got[path], (path, got[path])


def test_check_entry_point_and_task_exit_non_zero_with_file_and_reason(repo: Path, key_dir: Path) -> None:
    clean = subprocess.run(
        [sys.executable, "-m", "fluxops.secrets.check", str(repo)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert clean.returncode == 0, clean.stderr
    hostile_corpus(repo, key_dir)
    dirty = subprocess.run(
        [sys.executable, "-m", "fluxops.secrets.check"],
        capture_output=True,
        text=True,
        cwd=repo,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert dirty.returncode == 1
    assert "k8s/clusters/lab/infrastructure-config/plain.sops.yaml: named *.sops.yaml but not encrypted" in (
        dirty.stderr
    )
    task = run_invoke(repo, "secrets.check")
    assert task.returncode == 1 and "5 secret problem(s) found" in task.stderr
    assert "added.sops.yaml: plaintext value at stringData.extra" in task.stdout


def test_cli_new_view_encrypt_scaffold(repo: Path, key_dir: Path) -> None:
    made = run_invoke(
        repo,
        "secrets.new",
        "cf",
        "--cluster",
        "lab",
        "--namespace",
        "traefik",
        "--from-literal",
        "a=1",
        "--from-literal",
        "b=2",
        "--allow-argv",
    )
    assert made.returncode == 0, made.stderr
    path = f"{IC.format('lab')}/cf.sops.yaml"
    shown = run_invoke(repo, "secrets.view", path)
    assert shown.returncode == 0, shown.stderr
    assert YAML(typ="safe").load(shown.stdout)["stringData"] == {"a": "1", "b": "2"}
    (repo / IC.format("phx") / "p.sops.yaml").write_text(secret_yaml("p", k="v"))
    enc = run_invoke(repo, "secrets.encrypt", "--cluster", "phx")
    assert enc.returncode == 0 and "1 file(s) encrypted" in enc.stdout
    enc = run_invoke(repo, "secrets.encrypt")
    assert enc.returncode == 0 and "0 file(s) encrypted" in enc.stdout
    missing = run_invoke(repo, "secrets.view", "k8s/clusters/lab/nope.sops.yaml")
    assert missing.returncode == 1 and "nope.sops.yaml: no such file" in missing.stderr
    scaffold = run_invoke(repo, "secrets.scaffold", "--cluster", "lab")
    assert (
        scaffold.returncode == 0
        and "ok  k8s/clusters/lab/infrastructure-config/cf.sops.yaml" in scaffold.stdout
    )
    unknown = run_invoke(repo, "secrets.scaffold", "--cluster", "nope")
    assert unknown.returncode == 1 and "unknown cluster 'nope'" in unknown.stderr


def test_pre_commit_hook_runs_the_check() -> None:
    hooks = YAML(typ="safe").load((REPO / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "fluxops-secrets-check")
    assert "fluxops.secrets.check" in hook["entry"] and hook["pass_filenames"] is False
    example = YAML(typ="safe").load((REPO / ".pre-commit-config.example.yaml").read_text())
    ids = [h["id"] for repo in example["repos"] for h in repo["hooks"]]
    assert "fluxops-secrets-check" in ids


def test_keys_are_per_cluster(repo: Path, key_dir: Path) -> None:
    assert clusters.names(repo) == ["lab", "phx"]
    lab = write_encrypted(repo, f"{IC.format('lab')}/x.sops.yaml", secret_yaml("x", k="v"))
    assert decrypts_with(repo, lab, key_dir / "lab.agekey")
    assert not decrypts_with(repo, lab, key_dir / "phx.agekey")


def test_edit_runs_the_editor_through_sops(
    repo: Path, key_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_encrypted(repo, f"{IC.format('lab')}/e.sops.yaml", secret_yaml("e", token="REPLACE_ME"))
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/REPLACE_ME/real-value/' \"$1\"\n")
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    assert repository.edit(repo, key_dir, path) == 0
    assert "real-value" not in path.read_text()
    assert "token: real-value" in repository.view(repo, key_dir, path).reveal()


@pytest.mark.parametrize(
    ("meta", "plain_at"),
    [
        ({}, ["apiVersion", "metadata.name", "stringData.added"]),  # default: all but *_unencrypted
        ({"unencrypted_regex": "^(apiVersion|metadata)$"}, ["stringData.ok_unencrypted", "stringData.added"]),
        ({"encrypted_suffix": "_secret"}, ["stringData.token_secret"]),
    ],
)
def test_check_follows_the_files_own_encryption_rule(repo: Path, meta: dict, plain_at: list[str]) -> None:
    sops_meta = {
        "mac": "ENC[AES256_GCM,data:x,type:str]",
        "lastmodified": "2026-01-01T00:00:00Z",
        "age": [{"recipient": "age1x", "enc": "x"}],
        **meta,
    }
    document = {
        "apiVersion": "v1",
        "metadata": {"name": "x"},
        "stringData": {"token_secret": "plain", "ok_unencrypted": "fine", "enc": "ENC[AES256_GCM,data:y]"},
        "sops": sops_meta,
    }
    if not meta or "unencrypted_regex" in meta:
        document["stringData"]["added"] = "leak"
        document["stringData"]["token_secret"] = "ENC[AES256_GCM,data:z]"
    path = repo / IC.format("lab") / "odd.sops.yaml"
    YAML().dump(document, path)
    reasons = [f.reason for f in secrets_check.check_file(repo, path) if "plaintext value" in f.reason]
    assert reasons == [
        f"plaintext value at {p} (added after encryption); re-enter it with `invoke secrets.edit`"
        for p in plain_at
    ]


def test_the_checkout_itself_passes_the_check() -> None:
    """CI's plaintext guard: the repository under test (read only)."""
    assert [str(f) for f in secrets_check.check(REPO)] == []


def test_check_finds_a_private_key_anywhere_in_the_work_tree(repo: Path) -> None:
    import pyrage

    identity = str(pyrage.x25519.Identity.generate())
    planted = repo / "k8s" / "clusters" / "lab" / "notes.txt"
    planted.write_text(f"temporary:\n{identity}\n")
    (repo / "keys.backup").write_bytes(b"\x00binary\x00" + identity.encode())
    findings = secrets_check.check(repo)
    found = {f.path for f in findings if "age private key" in f.reason}
    assert found == {"k8s/clusters/lab/notes.txt", "keys.backup"}
    assert identity not in "\n".join(str(f) for f in findings)
    planted.unlink()
    (repo / "keys.backup").unlink()
    assert not [f for f in secrets_check.check(repo) if "age private key" in f.reason]
