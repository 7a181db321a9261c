"""What the command line shows: colour only on a terminal and never with NO_COLOR, progress only on a
terminal, shell completion (bash, run for real), and a start that loads only what the task needs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.unit.cli_testing import PROGRAMS, REPO, local_inventory, on_terminal, run

COLOUR = re.compile(rb"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")
ESCAPE = b"\x1b["
PROGRESS_SCRIPT = """\
import time
from fluxops.progress import shown
with shown("building kustomizations") as progress:
    progress(3, 7)
    time.sleep(0.3)
print("done")
"""


@pytest.mark.parametrize("program", PROGRAMS)
def test_colour_on_a_terminal_none_with_no_color_or_piped(program: str, tmp_path: Path) -> None:
    inventory = local_inventory(tmp_path, port=1)  # nothing listens on port 1: FAIL in red
    argv = [sys.executable, "-m", program, "inventory.ping"]
    env = {"INVOKE_FLUXOPS_INVENTORY": str(inventory)}
    code, shown = on_terminal(argv, env=env)
    assert code == 1 and b"FAIL" in shown
    assert COLOUR.search(shown), shown
    code, plain = on_terminal(argv, env={**env, "NO_COLOR": "1"})
    assert code == 1 and b"FAIL" in plain and not COLOUR.search(plain), plain
    piped = run(program, "inventory.ping", env=env)
    assert piped.returncode == 1 and "FAIL" in piped.stdout
    assert "\x1b[" not in piped.stdout + piped.stderr


def test_no_color_tables_carry_no_escape_code_at_all() -> None:
    argv = [sys.executable, "-m", "invoke", "inventory.show"]
    code, styled = on_terminal(argv)
    assert code == 0 and ESCAPE in styled  # the table's header is bold on a terminal
    code, plain = on_terminal(argv, env={"NO_COLOR": "1"})
    assert code == 0 and b"n5" in plain and ESCAPE not in plain, plain


def test_progress_is_drawn_on_a_terminal_and_silent_when_piped() -> None:
    argv = [sys.executable, "-c", PROGRESS_SCRIPT]
    code, shown = on_terminal(argv)
    assert code == 0 and b"building kustomizations" in shown and b"3/7" in shown
    assert COLOUR.search(shown)
    code, plain = on_terminal(argv, env={"NO_COLOR": "1"})
    assert code == 0 and b"building kustomizations" in plain and b"3/7" in plain
    assert not COLOUR.search(plain) and "━".encode() not in plain  # no bar without colour
    piped = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert piped.stdout == "done\n" and piped.stderr == ""
    dumb = subprocess.run(
        ["script", "-qec", f"{sys.executable} -c '{PROGRESS_SCRIPT}'", "/dev/null"],
        cwd=REPO,
        env={"TERM": "dumb", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dumb.returncode == 0 and "building" not in dumb.stdout and "done" in dumb.stdout


def test_bash_completes_tasks_flags_and_cluster_names(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "fluxops"  # the console script as pip writes it, for this checkout
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m fluxops "$@"\n')
    wrapper.chmod(0o755)

    def complete(*words: str, cwd: Path = REPO) -> list[str]:
        script = (
            'eval "$(fluxops --print-completion-script bash)"\n'
            f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
            f'_complete_fluxops fluxops "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"\n'
            'printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        done = subprocess.run(
            ["bash", "--norc", "-c", script],
            cwd=cwd,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return sorted(done.stdout.split())

    assert complete("fluxops", "layout.va") == ["layout.validate"]
    assert complete("fluxops", "layout.validate", "--cluster", "") == ["lab", "phx"]
    assert complete("fluxops", "layout.validate", "-c", "p") == ["phx"]
    assert complete("fluxops", "keys.rotate", "--cl") == ["--cluster"]
    assert "--json" in complete("fluxops", "secrets.check", "--")
    outside = tmp_path / "outside"
    outside.mkdir()
    assert complete("fluxops", "--path", str(REPO), "keys.show", "-c", "", cwd=outside) == ["lab", "phx"]
    # a repository laid out otherwise: its clusters as layout.validate finds them (entry Kustomizations)
    example = str(REPO / "tests" / "repos" / "flux2-example")
    assert complete("fluxops", "--path", example, "layout.validate", "-c", "") == ["production", "staging"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_fluxops(shell: str) -> None:
    result = run("fluxops", "--print-completion-script", shell)
    assert result.returncode == 0, result.stderr
    assert "fluxops --complete --" in result.stdout
    assert "collection" not in result.stdout  # -c is --cluster here, not invoke's --collection


def test_listing_the_tasks_loads_no_library_code() -> None:
    """Each task imports its own library code: listing (and so starting any task) loads none of it."""
    heavy = (
        "fluxops.sandbox",
        "fluxops.demo",
        "fluxops.secrets",
        "fluxops.layout",
        "fluxops.runner",
        "fluxops.sim",
        "fluxops.inventory",
        "fluxops.tables",
        "paramiko",
        "fabric",
        "plumbum",
        "ruamel",
        "jinja2",
        "rich",
        "pyrage",
        "jsonschema",
    )
    probe = f"import sys\n{{load}}\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))\n"
    for load in (
        "import tasks",
        "from invoke.main import program\nprogram.run(['invoke', '--list'], exit=False)",
        "from fluxops.cli import build_program\nbuild_program().run(['fluxops', '--list'], exit=False)",
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(load=load)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout.splitlines()[-1] == "", (load, done.stdout.splitlines()[-1])


def test_the_console_script_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"fluxops": "fluxops.cli:main"}
    installed = Path(sys.executable).parent / "fluxops"
    if installed.exists():  # an install made before the script was declared has none
        done = subprocess.run([str(installed), "--version"], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "fluxops 0.1.0"


@pytest.mark.parametrize("program", PROGRAMS)
def test_hints_name_the_program_that_runs(program: str, repo: Path, key_dir: Path) -> None:
    other = "fluxops" if program == "invoke" else "invoke"
    (key_dir / "lab.agekey").unlink()
    missing = run(program, "keys.env", "-c", "lab", cwd=repo)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no age key for cluster lab")
    assert f"`{program} keys.import --cluster lab FILE`" in missing.stderr
    assert f"`{program} keys.generate --cluster lab`" in missing.stderr and f"{other} " not in missing.stderr
    plain = repo / "k8s/clusters/phx/infrastructure-config/p.sops.yaml"
    plain.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: p\nstringData:\n  k: v\n")
    checked = run(program, "secrets.check", cwd=repo)
    assert checked.returncode == 1
    assert f"run `{program} secrets.encrypt`" in checked.stdout and f"`{other} " not in checked.stdout
