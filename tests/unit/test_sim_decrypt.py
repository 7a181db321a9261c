"""SOPS decryption as kustomize-controller does it (real sops, age keys made at test time with pyrage)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pyrage
import pytest
import yaml

from fluxops.masking import Secret
from fluxops.secrets.sops import binary
from tests.unit.sim_testing import commit, git_repository, kustomization, manifests, node, ready, settle

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
PLAIN = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "apps"},
         "stringData": {"token": "hunter2"}}  # fmt: skip
DECRYPTION = {"provider": "sops", "secretRef": {"name": "sops-age"}}


def encrypt(plain: dict, recipient: str) -> str:
    """``plain`` encrypted by sops to ``recipient`` (data/stringData only, as the repository's rules do)."""
    argv = [binary(), "encrypt", "--age", recipient, "--encrypted-regex", "^(data|stringData)$",
            "--filename-override", "secret.sops.yaml", "--input-type", "yaml",
            "--output-type", "yaml"]  # fmt: skip
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "SOPS_DISABLE_VERSION_CHECK": "1"}
    cwd = os.environ["HOME"]  # away from any .sops.yaml (the checkout's would apply its own rules)
    done = subprocess.run(
        argv, input=yaml.safe_dump(plain), capture_output=True, text=True, env=env, cwd=cwd, check=True
    )
    return done.stdout


def node_with(tmp_path: Path, files: dict[str, str], secret: dict[str, str | Secret] | None):
    """A node reading ``files`` (under apps/) whose ``sops-age`` Secret holds ``secret`` (none: no Secret),
    with the Kustomization apps decrypting them."""
    repo = tmp_path / "repo"
    commit(repo, {f"apps/{name}": text for name, text in files.items()})
    sim, clock = node(tmp_path, repo)
    if secret is not None:
        sim.put_secret("sops-age", "flux-system", secret)
    return sim, clock


@pytest.fixture
def keys() -> tuple[pyrage.x25519.Identity, pyrage.x25519.Identity]:
    return pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()


def test_an_encrypted_secret_is_decrypted_with_the_agekey_of_the_decryption_secret(
    tmp_path: Path, keys
) -> None:
    mine, _ = keys
    files = {"ns.yaml": manifests(NAMESPACE), "s.sops.yaml": encrypt(PLAIN, str(mine.to_public()))}
    sim, clock = node_with(tmp_path, files, {"age.agekey": Secret(str(mine)), "notes.txt": "ignored"})
    sim.apply([git_repository(), kustomization("apps", "./apps", decryption=DECRYPTION)])
    settle(sim, clock, 5)
    assert ready(sim, "apps")[0] == "True"
    stored = sim.read().get("", "Secret", "apps", "s")
    assert base64.b64decode(stored["data"]["token"]).decode() == "hunter2" and "sops" not in stored


def test_a_file_encrypted_to_another_key_fails_with_fluxs_decryption_message(tmp_path: Path, keys) -> None:
    mine, other = keys
    files = {"ns.yaml": manifests(NAMESPACE), "s.sops.yaml": encrypt(PLAIN, str(other.to_public()))}
    sim, clock = node_with(tmp_path, files, {"age.agekey": Secret(str(mine))})
    # the operator's own key in the default place must not help: Flux knows only the Secret's keys
    keys_txt = Path(os.environ["HOME"]) / ".config/sops/age/keys.txt"
    keys_txt.parent.mkdir(parents=True)
    keys_txt.write_text(str(other))
    sim.apply([git_repository(), kustomization("apps", "./apps", decryption=DECRYPTION)])
    settle(sim, clock, 5)
    status, reason, message = ready(sim, "apps")
    assert (status, reason) == ("False", "BuildFailed")
    assert message.startswith(
        "decryption failed for 'Secret.v1.[noGrp]/s': failed to decrypt and format 'apps/s' Secret data: "
        "cannot get sops data key: Failed to get the data key required to decrypt the SOPS file."
    )
    assert str(other.to_public()) in message and str(mine) not in message
    assert sim.read().get("", "Secret", "apps", "s") is None


def test_a_missing_decryption_secret_fails_the_build_with_the_apis_not_found(tmp_path: Path, keys) -> None:
    mine, _ = keys
    sim, clock = node_with(tmp_path, {"s.sops.yaml": encrypt(PLAIN, str(mine.to_public()))}, None)
    sim.apply([git_repository(), kustomization("apps", "./apps", decryption=DECRYPTION)])
    settle(sim, clock, 5)
    assert ready(sim, "apps") == ("False", "BuildFailed", 'secrets "sops-age" not found')


def test_only_entries_ending_in_agekey_are_identities(tmp_path: Path, keys) -> None:
    mine, _ = keys
    files = {"ns.yaml": manifests(NAMESPACE), "s.sops.yaml": encrypt(PLAIN, str(mine.to_public()))}
    sim, clock = node_with(tmp_path, files, {"age.key": Secret(str(mine))})  # flux2#5154: age.key is ignored
    sim.apply([git_repository(), kustomization("apps", "./apps", decryption=DECRYPTION)])
    settle(sim, clock, 5)
    assert ready(sim, "apps")[1] == "BuildFailed"
    assert "cannot get sops data key" in ready(sim, "apps")[2]
