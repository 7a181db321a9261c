"""One flag vocabulary over every task (docs/cli.md's table), --help after every task through invoke and
fluxops, and bad command lines as one line and exit 2, never a traceback."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from invoke import Program

from fluxops.cli import FluxopsProgram
from fluxops.tasks import namespace
from tests.unit.cli_testing import PROGRAMS, run, vocabulary


def task_flags() -> dict[str, dict[str, set[str]]]:
    """Task -> long flag -> its other names, as the parser sees them."""
    ns = namespace()
    found: dict[str, dict[str, set[str]]] = {}
    for name in ns.task_names:
        for arg in ns[name].get_arguments():
            long = next(n for n in arg.names if len(n) > 1)
            found.setdefault(name, {})[f"--{long}"] = {f"-{n}" for n in arg.names if len(n) == 1}
    return found


def core_flags(program: Program) -> set[str]:
    names: set[str] = set()
    for arg in program.core_args() + (program.task_args() if program.namespace is None else []):
        names |= {f"-{n}" if len(n) == 1 else f"--{n}" for n in arg.names}
    return names


def test_every_flag_of_every_task_is_in_the_documented_vocabulary() -> None:
    table = vocabulary()
    assert {"--cluster", "--namespace", "--host", "--limit", "--check", "--diff", "--json", "--force"} <= set(
        table
    )
    used: dict[str, set[str]] = {}
    for name, flags in task_flags().items():
        for flag, shorts in flags.items():
            assert flag in table, f"{name} {flag} is not in docs/cli.md's flag table"
            assert shorts == ({table[flag]["short"]} if table[flag]["short"] else set()), (name, flag, shorts)
            used.setdefault(flag, set()).add(name)
    for flag, row in table.items():
        assert row["tasks"] == used.get(flag, set()), f"docs/cli.md: the tasks of {flag}"


def test_short_flags_are_the_same_everywhere_and_never_a_core_flag_of_fluxops() -> None:
    shorts = {s: flag for flags in task_flags().values() for flag, ss in flags.items() for s in ss}
    assert shorts == {"-c": "--cluster", "-n": "--namespace", "-i": "--inventory"}
    every_flag = {f for flags in task_flags().values() for flag, ss in flags.items() for f in {flag, *ss}}
    fluxops_core = core_flags(FluxopsProgram(namespace=namespace()))
    assert "--path" in fluxops_core and "-c" not in fluxops_core
    assert every_flag & fluxops_core == set()
    # under invoke, -c before a task name is --collection; after it, the task's own -c is read first
    assert every_flag & core_flags(Program()) == {"-c"}


def test_every_value_parses_as_text_or_a_switch() -> None:
    """A typed flag (int, float) makes invoke print a traceback for a bad value: every flag takes text,
    a list of texts or nothing, and the task checks the value."""
    ns = namespace()
    for name in ns.task_names:
        for arg in ns[name].get_arguments():
            assert arg.kind in (str, bool, list), f"{name} --{arg.name}: {arg.kind}"


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_after_every_task(program: str) -> None:
    ns = namespace()

    def help_of(name: str) -> tuple[str, str, list[str]]:
        task = ns[name]
        result = run(program, name, "--help")
        assert result.returncode == 0, (name, result.stderr)
        assert "Traceback" not in result.stderr
        summary = task.__doc__.strip().splitlines()[0]
        flags = [f"--{n}" for a in task.get_arguments() for n in a.names if len(n) > 1]
        missing = [f for f in flags if f not in result.stdout]
        assert summary in result.stdout and not missing, (name, missing, result.stdout)
        return name, result.stdout, list(task.positional)

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(help_of, sorted(ns.task_names)))
    assert len(done) == len(ns.task_names) > 20
    # a task whose argument is a file or a name: -h where the argument goes is help too
    for name, shown, positional in done:
        if positional:
            short = run(program, name, "-h")
            assert short.returncode == 0 and short.stdout == shown, name
            assert f"Usage: {program} " in shown


@pytest.mark.parametrize("program", PROGRAMS)
def test_bad_values_and_missing_flags_are_one_line_and_exit_2(program: str) -> None:
    both = "error: node.up needs exactly one of --host and --cluster"
    cases = {
        ("layout.audit", "--threshold", "abc"): "error: --threshold must be a number, got 'abc'",
        ("layout.audit", "--threshold", "3"): "error: --threshold must be more than 0 and at most 1, got 3",
        ("keys.generate",): "error: --cluster is required",
        ("secrets.new", "db", "--cluster", "lab"): "error: --namespace is required",
        ("node.up", "--host", "n5", "--cluster", "lab"): both,
        ("node.up",): both,
    }
    for args, message in cases.items():
        result = run(program, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, (args, result.stderr)
        assert result.stderr.startswith(message), (args, result.stderr)
        assert result.stdout == ""


def test_fluxops_parser_errors_have_the_prefix_and_exit_2() -> None:
    wrong = (("inventory.show", "--nope"), ("no.such-task",), ("inventory.show", "--cluster"), ("-c", "lab"))
    for args in wrong:
        result = run("fluxops", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_unknown_cluster_is_one_line_exit_1(program: str) -> None:
    result = run(program, "inventory.show", "-c", "nope")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "unknown cluster 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_short_flags_reach_the_task(program: str) -> None:
    result = run(program, "inventory.show", "-c", "phx", "--json")
    assert result.returncode == 0, result.stderr
    assert [h["cluster"] for h in json.loads(result.stdout)] == ["phx"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_c_after_a_task_without_cluster_is_a_usage_error(program: str, tmp_path: Path) -> None:
    """invoke's parser takes ``-c`` after a task without ``-c`` as its own --collection (and ignores it):
    refused under invoke as under fluxops, while -c of a task with --cluster and invoke's -c before
    the task name keep working."""
    env = {"INVOKE_FLUXOPS_SANDBOX_DIR": str(tmp_path / "no-sandbox")}
    for args in (("sandbox.status", "-c", "lab"), ("sandbox.status", "--json", "--collection=x")):
        if program == "fluxops" and "--collection=x" in args:
            continue
        refused = run(program, *args, env=env)
        assert refused.returncode == 2, (args, refused.stderr)
        assert refused.stdout == "" and len(refused.stderr.splitlines()) == 1, refused.stderr
        assert refused.stderr.startswith("error: "), refused.stderr
        if program == "invoke":
            assert refused.stderr.startswith("error: sandbox.status has no -c/--cluster"), refused.stderr
    # two tasks on one line: the second one's -c is the one refused
    both = run(program, "inventory.show", "-c", "lab", "sandbox.status", "-c", "x", env=env)
    assert both.returncode == 2 and both.stdout == "", both.stdout
    shown = run(program, "inventory.show", "-c", "phx", "--json", env=env)
    assert shown.returncode == 0 and [h["cluster"] for h in json.loads(shown.stdout)] == ["phx"]
    if program == "invoke":
        before = run(program, "-c", "tasks", "sandbox.status", env=env)
        assert before.returncode == 1 and before.stderr.startswith("error: no sandbox is running")
