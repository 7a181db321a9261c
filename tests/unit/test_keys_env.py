"""keys.env: one printed shell line and plain sops decrypts the repository's files; no key is shown."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from fluxops.secrets import sops
from tests.unit.sops_testing import key_secret, run_invoke, secret_yaml, write_encrypted

LAB = "k8s/clusters/lab/infrastructure-config/a.sops.yaml"
PHX = "k8s/clusters/phx/infrastructure-config/b.sops.yaml"


def plain_sops(repo: Path, home: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``bash -c SCRIPT`` with the sops binary on PATH and none of fluxops or its variables."""
    env = {"PATH": f"{Path(sops.binary()).parent}:{os.environ['PATH']}", "HOME": str(home)}
    return subprocess.run(
        ["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_printed_line_lets_plain_sops_decrypt(repo: Path, key_dir: Path, tmp_path: Path) -> None:
    write_encrypted(repo, LAB, secret_yaml("a", token="lab-value"))
    write_encrypted(repo, PHX, secret_yaml("b", token="phx-value"))
    private = [key_secret(p) for p in key_dir.glob("*.agekey")]
    assert len(private) == 2
    home = tmp_path / "plain-home"
    home.mkdir()
    lab, phx = f"sops decrypt {LAB}", f"sops decrypt {PHX}"
    assert plain_sops(repo, home, lab).returncode != 0  # without the line, plain sops has no key

    one = run_invoke(repo, "keys.env", "--cluster", "lab")
    assert one.returncode == 0, one.stderr
    assert one.stdout == f"export SOPS_AGE_KEY_FILE={shlex.quote(str(key_dir / 'lab.agekey'))}\n"
    done = plain_sops(repo, home, f"{one.stdout}{lab}")
    assert done.returncode == 0, done.stderr
    assert "token: lab-value" in done.stdout
    assert plain_sops(repo, home, f"{one.stdout}{phx}").returncode != 0

    every = run_invoke(repo, "keys.env")
    assert every.returncode == 0, every.stderr
    assert every.stdout.startswith("export SOPS_AGE_KEY_CMD=") and every.stdout.count("\n") == 1
    done = plain_sops(repo, home, f'eval "$(printf %s {shlex.quote(every.stdout)})"\n{lab} && {phx}')
    assert done.returncode == 0, done.stderr
    assert "token: lab-value" in done.stdout and "token: phx-value" in done.stdout

    for result in (one, every):
        for secret in private:
            assert secret not in result.stdout + result.stderr
        assert "AGE-SECRET-KEY" not in result.stdout + result.stderr
    assert not list(repo.rglob("*.agekey")) and not list(home.rglob("*"))


def test_fluxops_still_uses_each_clusters_key_with_the_line_set(repo: Path, key_dir: Path) -> None:
    write_encrypted(repo, PHX, secret_yaml("b", token="phx-value"))
    # after `eval "$(invoke keys.env --cluster lab)"`, a phx file is still read with phx's key
    shown = run_invoke(repo, "secrets.view", PHX, env={"SOPS_AGE_KEY_FILE": str(key_dir / "lab.agekey")})
    assert shown.returncode == 0, shown.stderr
    assert "token: phx-value" in shown.stdout


def test_a_missing_key_is_named(repo: Path, key_dir: Path) -> None:
    (key_dir / "phx.agekey").unlink()
    missing = run_invoke(repo, "keys.env", "--cluster", "phx")
    assert missing.returncode == 1 and "phx" in missing.stderr and "Traceback" not in missing.stderr
    partial = run_invoke(repo, "keys.env")
    assert partial.returncode == 0, partial.stderr
    assert str(key_dir / "lab.agekey") in partial.stdout and "phx.agekey" not in partial.stdout
    assert "no key yet for: phx" in partial.stderr
