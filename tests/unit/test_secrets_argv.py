"""secrets.new never puts a secret value on a command line: every process is watched while it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fluxops.secrets import repository, sops
from tests.unit.sops_testing import REPO, run_invoke

FOLDER = "k8s/clusters/lab/infrastructure-config"


class ProcessWatch:
    """Reads every /proc/*/cmdline (and the environment of sops processes) until stopped."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.cmdlines: set[str] = set()
        self.sops_environments: list[bytes] = []
        self.sweeps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    raw = Path(entry.path, "cmdline").read_bytes()
                    text = raw.replace(b"\0", b" ").decode(errors="replace")
                    if self.marker in text:
                        self.sops_environments.append(Path(entry.path, "environ").read_bytes())
                except OSError:
                    continue
                if text:
                    self.cmdlines.add(text)
            self.sweeps += 1

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def slow_sops(tmp_path: Path) -> Path:
    """A sops that takes a second to start, so its command line is surely seen."""
    wrapper = tmp_path / "slow-sops"
    wrapper.write_text(f'#!/bin/sh\nsleep 1\nexec "{sops.binary()}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def new_secret(repo: Path, args: list[str], env: dict[str, str], stdin: str | None) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "secrets.new", *args],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("source", ["stdin", "env"])
def test_a_secret_value_shows_in_no_process_command_line(
    repo: Path, key_dir: Path, tmp_path: Path, source: str
) -> None:
    value = f"pw-{uuid.uuid4().hex}"
    env = {"FLUXOPS_SOPS": str(slow_sops(tmp_path))}
    args = ["db", "--cluster", "lab", "--namespace", "apps"]
    if source == "stdin":
        args += ["--from-stdin", "password"]
        stdin: str | None = value + "\n"
    else:
        args += ["--from-env", "password=DB_PASSWORD"]
        env["DB_PASSWORD"] = value
        stdin = None
    with ProcessWatch("slow-sops") as watch:
        rc, out, err = new_secret(repo, args, env, stdin)
    assert rc == 0, err
    assert watch.sweeps > 10
    # the watch saw the whole run, sops included
    assert any("secrets.new" in c and "password" in c for c in watch.cmdlines)
    assert any("slow-sops" in c and "encrypt" in c for c in watch.cmdlines)
    assert [c for c in watch.cmdlines if value in c] == []
    # and sops' environment never held it either (sops gets a minimal environment)
    assert watch.sops_environments and all(value.encode() not in e for e in watch.sops_environments)
    path = repo / FOLDER / "db.sops.yaml"
    assert value not in path.read_text() and value not in out + err
    plain = YAML(typ="safe").load(repository.view(repo, key_dir, path).reveal())
    assert plain["stringData"] == {"password": value}


def test_from_literal_needs_allow_argv(repo: Path, key_dir: Path) -> None:
    refused = run_invoke(
        repo, "secrets.new", "db", "--cluster", "lab", "--namespace", "apps", "--from-literal", "password=x1"
    )
    assert refused.returncode == 1
    for alternative in ("--from-file KEY=PATH", "--from-env KEY=ENVVAR", "--from-stdin KEY", "--allow-argv"):
        assert alternative in refused.stderr
    assert not (repo / FOLDER / "db.sops.yaml").exists()

    allowed = run_invoke(
        repo,
        *("secrets.new", "db", "--cluster", "lab", "--namespace", "apps"),
        *("--from-literal", "password=x1", "--allow-argv"),
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: --from-literal puts the value on the command line" in allowed.stderr
    path = repo / FOLDER / "db.sops.yaml"
    assert YAML(typ="safe").load(repository.view(repo, key_dir, path).reveal())["stringData"] == {
        "password": "x1"
    }


def test_value_sources_are_checked(repo: Path, tmp_path: Path) -> None:
    base = ("secrets.new", "db", "--cluster", "lab", "--namespace", "apps")
    missing = run_invoke(repo, *base, "--from-env", "password=FLUXOPS_TEST_NO_SUCH_VARIABLE")
    assert missing.returncode == 1 and "FLUXOPS_TEST_NO_SUCH_VARIABLE is not set" in missing.stderr
    rc, _, err = new_secret(repo, [*base[1:], "--from-stdin", "password"], {}, "")
    assert rc == 1 and "--from-stdin password: no value given" in err
    twice = tmp_path / "pw"
    twice.write_text("a")
    rc, _, err = new_secret(
        repo, [*base[1:], "--from-stdin", "password", "--from-file", f"password={twice}"], {}, "b\n"
    )
    assert rc == 1 and "key given twice: password" in err
    assert not (repo / FOLDER / "db.sops.yaml").exists()
