"""``invoke play`` from the command line, on hosts of an inventory that run on this machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.unit.cli_testing import PLAYBOOK, local_inventory, run


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return run("invoke", *args)


PLAY = (
    PLAYBOOK
    + """\
    - name: fail on request
      command:
        cmd: exit 1
        unless: "test ! -e {{ out }}/fail-{{ inventory_hostname }}"
"""
)


FLAGS = ("--limit", "--tags", "--check", "--diff", "--json", "--inventory", "--accept-new-host-key")


def test_help_explains_every_flag() -> None:
    for args in (("play", "--help"), ("play", "-h"), ("--help", "play")):
        result = invoke(*args)
        assert result.returncode == 0, result.stderr
        for flag in (
            "--limit",
            "--tags",
            "--check",
            "--diff",
            "--json",
            "--inventory",
            "--accept-new-host-key",
        ):
            assert flag in result.stdout
        assert "Run a playbook on the inventory's hosts" in result.stdout


def test_four_steps_through_the_command_line(tmp_path: Path) -> None:
    inventory = local_inventory(tmp_path)
    book = tmp_path / "play.yaml"
    book.write_text(PLAY)
    expected = [(2, 1), (2, 1), (2, 0), (2, 0)]  # (ok, changed) of each host
    for check, (ok, changed) in zip((True, False, True, False), expected, strict=True):
        flags = ["--check"] if check else []
        result = invoke("play", str(book), "--inventory", str(inventory), "--json", *flags)
        assert result.returncode == 0, result.stderr
        recap = json.loads(result.stdout)["recap"]
        assert {h: (r["ok"], r["changed"]) for h, r in recap.items()} == {
            "n5": (ok, changed),
            "phx1": (ok, changed),
        }
        made = sorted(p.name for p in (tmp_path / "out").iterdir())
        assert made == ([] if check and changed else ["n5", "phx1"])


def test_progress_lines_limit_and_tags(tmp_path: Path) -> None:
    inventory = local_inventory(tmp_path)
    book = tmp_path / "play.yaml"
    book.write_text(PLAY)
    result = invoke("play", str(book), "-i", str(inventory), "--limit", "lab", "--tags", "mark", "--check")
    assert result.returncode == 0, result.stderr
    assert "PLAY [markers] ****" in result.stdout
    assert "changed: [n5] TASK [marker]: run touch" in result.stdout
    assert "phx1" not in result.stdout and "fail on request" not in result.stdout
    assert "PLAY RECAP" in result.stdout


def test_a_failed_host_exits_1_and_the_other_finishes(tmp_path: Path) -> None:
    inventory = local_inventory(tmp_path)
    (tmp_path / "out" / "fail-phx1").touch()
    book = tmp_path / "play.yaml"
    book.write_text(PLAY)
    result = invoke("play", str(book), "-i", str(inventory))
    assert result.returncode == 1
    assert "fatal: [phx1] TASK [fail on request]: FAILED! command failed (exit 1)" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "error: failed: phx1"
    assert (tmp_path / "out" / "n5").exists()


def test_a_bad_playbook_exits_1_with_file_and_line_and_runs_nothing(tmp_path: Path) -> None:
    inventory = local_inventory(tmp_path)
    book = tmp_path / "play.yaml"
    book.write_text(PLAY + "    - name: typo\n      comand: {cmd: x}\n")
    result = invoke("play", str(book), "-i", str(inventory))
    assert result.returncode == 1
    line = PLAY.count("\n") + 2  # the line of the unknown key
    assert f"error: {book}:{line}: task 'typo': unknown module or keyword 'comand'" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "out").iterdir()) == []
