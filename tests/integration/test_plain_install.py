"""A plain ``pip install`` (no test extra) in a fresh venv gives a working tool without testinfra."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SOURCES = ("pyproject.toml", "README.md", "fluxops")


def _pip_cache() -> str:
    """The real pip cache (the autouse fixture gives each test a fresh $HOME)."""
    if os.environ.get("PIP_CACHE_DIR"):
        return os.environ["PIP_CACHE_DIR"]
    return str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "pip")


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with this checkout installed as ``pip install .`` would, without extras."""
    base = tmp_path_factory.mktemp("plain")
    source = base / "src"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "PIP_CACHE_DIR": _pip_cache(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def _invoke(venv: Path, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    path = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update({"PATH": path, "COLUMNS": "200", **(extra or {})})
    return subprocess.run(
        [str(venv / "bin" / "invoke"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_testinfra_is_not_part_of_a_plain_install(plain_venv: Path) -> None:
    python = str(plain_venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import testinfra"], capture_output=True)
    assert probe.returncode != 0
    assert (plain_venv / "bin" / "kubectl").is_file(), "kubectl is a runtime dependency"


@pytest.mark.parametrize("args", [["--list"], ["keys.show"], ["layout.validate"]])
def test_tasks_work_without_the_test_extra(plain_venv: Path, args: list[str]) -> None:
    result = _invoke(plain_venv, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "testinfra" not in result.stderr
    if args == ["--list"]:
        assert "demo" in result.stdout and "layout.validate" in result.stdout
