"""Facts in one round trip: the batch script run by a real sh, and the parse of its output."""

from __future__ import annotations

import os
import re

import pytest

from fluxops.runner import batch
from fluxops.runner.batch import Answer, BatchError, Snippet
from fluxops.shell import local


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
