"""A change's command and the next fact batch in one ``sh`` script: run for real with this machine's sh."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fluxops.runner import batch, follow


def run_script(text: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = subprocess.run(["sh", "-c", text], input=stdin, capture_output=True, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_the_command_keeps_its_stdin_output_and_the_batch_follows(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("hello\n")
    snippets = [batch.Snippet("f", f"cat {tmp_path}/f"), batch.Snippet("g", "cat /nonexistent")]
    marker, separator = batch.new_marker(), batch.new_marker()
    argv = ["sh", "-c", 'cat > "$1"; printf "no newline"; printf "warn" >&2', "sh", str(tmp_path / "f")]
    text = follow.script(argv, batch.script(snippets, marker), separator)
    assert text is not None
    rc, out, err = run_script(text, b"written by the command\n")
    parts = follow.split(out, err, separator)
    assert rc == 0 and parts.ran_batch
    assert (parts.stdout, parts.stderr) == ("no newline", "warn")
    answers = batch.parse(parts.batch_stdout, snippets, marker)
    assert answers["f"] == batch.Answer("written by the command\n", 0)  # read after the command ran
    assert answers["g"].rc != 0


def test_a_failing_command_ends_the_script_with_its_exit_code_and_output() -> None:
    marker, separator = batch.new_marker(), batch.new_marker()
    text = follow.script(["sh", "-c", "echo partial; echo broken >&2; exit 7"], "echo BATCH RAN", separator)
    assert text is not None
    rc, out, err = run_script(text)
    parts = follow.split(out, err, separator)
    assert rc == 7 and not parts.ran_batch
    assert (parts.stdout, parts.stderr) == ("partial\n", "broken\n")
    assert "BATCH RAN" not in out and marker not in out


def test_output_that_looks_like_a_separator_is_not_one() -> None:
    separator = batch.new_marker()
    forged = batch.new_marker()
    text = follow.script(["sh", "-c", 'printf "\\n%s\\n" "$1"', "sh", forged], "echo batch", separator)
    assert text is not None
    rc, out, err = run_script(text)
    parts = follow.split(out, err, separator)
    assert rc == 0 and parts.stdout == f"\n{forged}\n" and parts.batch_stdout == "batch\n"


def test_shell_words_and_long_scripts_are_not_shared() -> None:
    assert follow.can_share(["touch", "/x"]) and follow.can_share(["/bin/echo", "x"])
    for argv in (["echo", "x"], ["test", "-e", "/x"], ["if"], ["A=b", "cmd"], []):
        assert not follow.can_share(argv)
    assert follow.script(["true"], "x" * follow.MAX_SCRIPT, "sep") is None


def test_a_missing_program_runs_nothing_and_says_so(tmp_path: Path) -> None:
    separator = batch.new_marker()
    for argv in (["no-such-program-here", "x"], [str(tmp_path / "none"), "x"], [str(tmp_path), "x"]):
        text = follow.script(argv, f"touch {tmp_path}/batch-ran", separator)
        assert text is not None
        rc, out, err = run_script(text)
        assert rc == 0 and err == ""
        assert follow.split(out, err, separator).absent
    assert not (tmp_path / "batch-ran").exists()
