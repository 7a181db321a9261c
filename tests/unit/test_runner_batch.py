"""Facts in one round trip: the batch script run by a real sh, and the parse of its output."""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Sequence
from pathlib import Path

import pytest

from fluxops.runner import batch
from fluxops.runner.batch import Answer, BatchError, Snippet
from fluxops.shell import local, quote


def run_batch(snippets: list[Snippet]) -> dict[str, Answer]:
    marker = batch.new_marker()
    result = local().run(["sh", "-s"], stdin=batch.script(snippets, marker), timeout=30)
    return batch.parse(result.stdout, snippets, marker)


def test_each_snippet_gets_its_own_output_and_exit_code() -> None:
    snippets = [
        Snippet("lines", "printf 'a\\nb\\n'"),
        Snippet("no newline", "printf x"),
        Snippet("empty", "true"),
        Snippet("blank lines", "printf '\\n\\n'"),
        Snippet("fails", "echo partial; exit 5"),
        Snippet("unicode", "printf 'ünï\\tcødé'"),
        Snippet("missing file", "test -e /nonexistent/file"),
    ]
    answers = run_batch(snippets)
    assert answers == {
        "lines": Answer("a\nb\n", 0),
        "no newline": Answer("x", 0),
        "empty": Answer("", 0),
        "blank lines": Answer("\n\n", 0),
        "fails": Answer("partial\n", 5),
        "unicode": Answer("ünï\tcødé", 0),
        "missing file": Answer("", 1),
    }


def test_a_snippet_cannot_disturb_the_others() -> None:
    snippets = [
        Snippet("exit", "exit 3"),
        Snippet("cd", "cd /; pwd"),
        Snippet("syntax", "if then fi ("),
        Snippet("stdin", "cat"),  # stdin is /dev/null: no hang, no script read as data
        Snippet("stderr", "echo out; echo err >&2"),
        Snippet("after", "pwd"),
    ]
    answers = run_batch(snippets)
    assert answers["exit"].rc == 3
    assert answers["syntax"].rc != 0
    assert answers["stdin"] == Answer("", 0)
    assert answers["stderr"] == Answer("out\n", 0)
    assert answers["cd"] == Answer("/\n", 0)
    assert answers["after"] == Answer(f"{os.getcwd()}\n", 0)  # the cd stayed in its subshell


def test_a_module_snippet_without_isolation_runs_in_the_script_shell_and_answers_the_same() -> None:
    """No subshell for a module's own fixed snippet: its output, exit code and stdin/stderr handling are
    the same; only what it sets stays for later snippets (module snippets set their own variables)."""
    snippets = [
        Snippet("set", "v=kept; echo out; echo err >&2; false", isolated=False),
        Snippet("stdin", "cat", isolated=False),
        Snippet("isolated sees it", "echo ${v:-unset}"),
        Snippet("exit", "exit 4"),
        Snippet("after", "echo alive"),
    ]
    answers = run_batch(snippets)
    assert answers["set"] == Answer("out\n", 1)
    assert answers["stdin"] == Answer("", 0)
    assert answers["isolated sees it"] == Answer("kept\n", 0)
    assert answers["exit"].rc == 4 and answers["after"] == Answer("alive\n", 0)
    assert "{ eval" in batch.script(snippets, "m") and "( eval 'exit 4' )" in batch.script(snippets, "m")


def test_output_cannot_forge_a_frame() -> None:
    forged = f"{batch.MARKER_PREFIX}{'0' * 32} end 0 0"
    snippets = [Snippet("forger", f"echo '{forged}'; echo more"), Snippet("next", "echo next")]
    answers = run_batch(snippets)
    assert answers["forger"] == Answer(f"{forged}\nmore\n", 0)
    assert answers["next"] == Answer("next\n", 0)


def test_quotes_and_dollars_in_snippets_arrive_as_written() -> None:
    text = """printf '%s|' "it's" '$HOME' "a\\"b" `echo tick`"""
    assert run_batch([Snippet("q", text)])["q"].stdout == "it's|$HOME|a\"b|tick|"


def test_markers_differ_per_batch() -> None:
    assert batch.new_marker() != batch.new_marker()
    assert batch.new_marker().startswith(batch.MARKER_PREFIX)


def test_parse_of_written_output() -> None:
    snippets = [Snippet("a", ""), Snippet("b", "")]
    text = "M begin 0\nx\ny\nM end 0 0\nM begin 1\n\nM end 1 7\n"
    assert batch.parse(text, snippets, "M") == {"a": Answer("x\ny", 0), "b": Answer("", 7)}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("M begin 0\nx\nM end 0 0\n", "stops before fact 'b' (1 of 2 answered)"),
        ("M begin 0\nx\n", "stops before fact 'a' (0 of 2 answered)"),
        ("M begin 1\nx\nM end 1 0\nM begin 0\n\nM end 0 0\n", "fact 1 came where fact 0 was expected"),
        ("", "0 of 2 answered"),
    ],
)
def test_parse_refuses_cut_or_reordered_output(text: str, words: str) -> None:
    with pytest.raises(BatchError, match=re.escape(words)):
        batch.parse(text, [Snippet("a", ""), Snippet("b", "")], "M")


# --- module snippets asked for twice, and readers --------------------------------------------


def test_a_module_snippet_asked_for_twice_runs_once_and_answers_both(tmp_path: Path) -> None:
    """Two tasks reading the same thing get one answer; an isolated snippet, which may be any command,
    runs each time it is asked for."""
    count = "n=$((${n:-0} + 1)); echo $n"
    runs = f"echo run >> {quote([str(tmp_path / 'runs')])}; wc -l < {quote([str(tmp_path / 'runs')])}"
    snippets = [
        Snippet("first", count, isolated=False),
        Snippet("isolated", runs),
        Snippet("again", count, isolated=False),
        Snippet("isolated again", runs),
        Snippet("third", count, isolated=False),
    ]
    assert batch.script(snippets, "m").count(f"{{ eval {quote([count])}; }}") == 1
    answers = run_batch(snippets)
    assert answers["first"] == answers["again"] == answers["third"] == Answer("1\n", 0)
    assert (answers["isolated"], answers["isolated again"]) == (Answer("1\n", 0), Answer("2\n", 0))


def test_a_snippet_run_once_for_several_keys_survives_the_parse() -> None:
    snippets = [Snippet("a", "x", isolated=False), Snippet("b", "y"), Snippet("c", "x", isolated=False)]
    text = "M begin 0\none\nM end 0 0\nM begin 1\ntwo\nM end 1 3\n"
    assert batch.parse(text, snippets, "M") == {
        "a": Answer("one", 0),
        "b": Answer("two", 3),
        "c": Answer("one", 0),
    }
    with pytest.raises(BatchError, match=re.escape("stops before fact 'b' (1 of 2 answered)")):
        batch.parse("M begin 0\none\nM end 0 0\n", snippets, "M")


class Upper:
    """A reader for the tests: one command answers every request with its text in capitals, the way
    the request's own snippet (``echo <text>``) would answer it in lower case."""

    def __init__(self, program: str = "tr") -> None:
        self.program = program
        self.commands = 0

    def command(self, requests: Sequence[tuple[int, Hashable]], marker: str) -> str:
        self.commands += 1
        frames = [
            f"printf '%s begin {n}\\n' {marker}; echo {quote([str(text)])} | {self.program} a-z A-Z; "
            f"printf '\\n%s end {n} 0\\n' {marker}"
            for n, text in requests
        ]
        return "{ " + "; ".join(frames) + "; }"


def said(key: str, text: str, reader: Upper) -> Snippet:
    return Snippet(key, f"echo {text}", isolated=False, reader=reader, request=text)


def test_the_snippets_of_a_reader_are_answered_by_its_one_command_in_place_of_the_first() -> None:
    reader = Upper()
    snippets = [
        Snippet("before", "echo before"),
        said("one", "one", reader),
        Snippet("between", "echo between"),
        said("two", "two", reader),
        said("one again", "one", reader),
    ]
    marker = batch.new_marker()
    script = batch.script(snippets, marker)
    assert reader.commands == 1
    result = local().run(["sh", "-s"], stdin=script, timeout=30)
    assert batch.parse(result.stdout, snippets, marker) == {
        "before": Answer("before\n", 0),
        "one": Answer("ONE\n", 0),
        "two": Answer("TWO\n", 0),
        "one again": Answer("ONE\n", 0),
        "between": Answer("between\n", 0),
    }
    order = [line.split()[-1] for line in result.stdout.splitlines() if " begin " in line]
    assert order == ["0", "1", "2", "3"]  # before, one, two (the reader's run), between


def test_without_the_program_a_reader_needs_each_snippet_runs_on_its_own() -> None:
    reader = Upper("fluxops-no-such-program")
    snippets = [said("one", "one", reader), said("two", "two", reader), Snippet("after", "echo after")]
    assert run_batch(snippets) == {
        "one": Answer("one\n", 0),
        "two": Answer("two\n", 0),
        "after": Answer("after\n", 0),
    }


def test_a_reader_with_one_snippet_leaves_it_to_run_on_its_own() -> None:
    reader = Upper()
    assert run_batch([said("one", "one", reader), said("again", "one", reader)]) == {
        "one": Answer("one\n", 0),
        "again": Answer("one\n", 0),
    }
    assert reader.commands == 0
