"""The executor on this machine: real sh, real files in a temporary folder, hosts as local targets."""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from fluxops.inventory import Host
from fluxops.masking import Secret
from fluxops.runner import execute, playbook, recap
from fluxops.runner.execute import Options
from fluxops.runner.module import Args, Change, Context, Fact, Facts, Module, Param, Step, unified_diff
from fluxops.runner.modules import MODULES
from fluxops.runner.results import Report
from fluxops.runner.targets import Target, local_target
from fluxops.shell import RemoteShell, Result, local, quote


class Recording:
    """This machine's real shell, keeping every command (and its stdin) it was asked to run."""

    def __init__(self) -> None:
        self.name = "local"
        self.calls: list[tuple[tuple[str, ...], Any]] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> Result:
        self.calls.append((tuple(argv), kwargs.get("stdin")))
        return local().run(argv, **kwargs)

    def batches(self) -> list[str]:
        """The fact scripts sent, in order."""
        return [str(stdin) for argv, stdin in self.calls if argv[-2:] == ("sh", "-s")]


class ScratchFile(Module):
    """A small file module for these tests: content through stdin, the diff of the change."""

    name = "scratch_file"
    params = (Param("path", required=True), Param("content", required=True))

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        return [Fact("content", f"cat {quote([args['path']])}", lambda out, rc: out if rc == 0 else None)]

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        if facts["content"] == args["content"]:
            return None
        return Change(
            steps=(Step(("sh", "-c", 'cat > "$1"', "sh", args["path"]), stdin=args["content"]),),
            summary=f"write {args['path']}",
            diff=unified_diff(args["path"], facts["content"], args["content"]),
        )


class ScratchFetch(Module):
    """Copies a file of the host back to the controller (the runner does the copy)."""

    name = "scratch_fetch"
    params = (Param("src", required=True), Param("dest", required=True))

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        return Change(steps=(), summary=f"fetch {args['src']}", fetch=((args["src"], args["dest"]),))


@pytest.fixture
def scratch_modules() -> Iterator[None]:
    """The test modules, known to playbooks for one test."""
    for cls in (ScratchFile, ScratchFetch):
        MODULES[cls.name] = cls
    yield
    for cls in (ScratchFile, ScratchFetch):
        del MODULES[cls.name]


def write(tmp_path: Path, text: str) -> playbook.Playbook:
    path = tmp_path / "play.yaml"
    path.write_text(text)
    return playbook.load(path)


def run(book: playbook.Playbook, targets: list[Target], **options: Any) -> tuple[Report, str]:
    out = io.StringIO()
    reporter = recap.TextReporter(
        Console(file=out, color_system=None, width=200), check=options.get("check", False)
    )
    report = execute.run(book, targets, Options(**options), reporter)
    reporter.recap(report)
    return report, out.getvalue()


def counts(report: Report, host: str = "box") -> tuple[int, int, int, int]:
    stats = report.stats[host]
    return stats.ok, stats.changed, stats.failed, stats.skipped


# --- idempotence, check mode, diffs --------------------------------------------------------------


def test_four_steps_with_command_creates(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- name: markers\n  hosts: all\n  tasks:\n"
        + "".join(
            f"    - name: marker {n}\n      command:\n        argv: [touch, '{{{{ dir }}}}/{n}']\n"
            f"        creates: '{{{{ dir }}}}/{n}'\n"
            for n in range(3)
        ),
    )
    target = local_target("box", vars={"dir": str(tmp_path / "out")})
    (tmp_path / "out").mkdir()
    made = lambda: sorted(p.name for p in (tmp_path / "out").iterdir())  # noqa: E731

    report, text = run(book, [target], check=True)
    assert counts(report) == (3, 3, 0, 0)
    assert made() == []
    assert "check mode: nothing is changed" in text
    report, _ = run(book, [target])
    assert counts(report) == (3, 3, 0, 0)
    assert made() == ["0", "1", "2"]
    report, text = run(book, [target], check=True)
    assert counts(report) == (3, 0, 0, 0)
    report, text = run(book, [target])
    assert counts(report) == (3, 0, 0, 0)
    assert "box                        : ok=3    changed=0    unreachable=0    failed=0    skipped=0" in text


def test_check_mode_shows_the_diff_of_every_file_and_changes_nothing(
    tmp_path: Path, scratch_modules: None
) -> None:
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: config\n      scratch_file:\n        path: '{{ dir }}/config.yaml'\n"
        '        content: "name: {{ inventory_hostname }}\\nport: 80\\n"\n',
    )
    config = tmp_path / "config.yaml"
    config.write_text("name: box\nport: 8080\n")
    target = local_target("box", vars={"dir": str(tmp_path)})

    report, text = run(book, [target], check=True, diff=True)
    assert counts(report) == (1, 1, 0, 0)
    assert f"changed: [box] TASK [config]: write {config}" in text
    assert "-port: 8080\n+port: 80\n" in text
    assert config.read_text() == "name: box\nport: 8080\n"
    report, text = run(book, [target], check=True)
    assert "+port: 80" not in text  # no diff without --diff
    report, text = run(book, [target], diff=True)
    assert "-port: 8080\n+port: 80\n" in text
    assert config.read_text() == "name: box\nport: 80\n"
    report, text = run(book, [target], check=True, diff=True)
    assert counts(report) == (1, 0, 0, 0)
    assert "+port" not in text


# --- facts in one round trip ---------------------------------------------------------------------


def guarded_tasks(count: int, prefix: str = "") -> str:
    return "".join(
        f"    - name: t{n}\n      command:\n        argv: [touch, '{{{{ dir }}}}/{prefix}{n}']\n"
        f"        creates: '{{{{ dir }}}}/{prefix}{n}'\n"
        for n in range(count)
    )


def test_a_no_op_run_is_one_round_trip(tmp_path: Path) -> None:
    book = write(tmp_path, "- hosts: all\n  tasks:\n" + guarded_tasks(6))
    for n in range(6):
        (tmp_path / str(n)).touch()
    shell = Recording()
    report, _ = run(book, [local_target("box", vars={"dir": str(tmp_path)}, shell=shell)])
    assert counts(report) == (6, 0, 0, 0)
    assert len(shell.calls) == 1
    assert all(f"{tmp_path}/{n}" in shell.batches()[0] for n in range(6))


def test_facts_are_read_again_after_a_change(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: make x\n      command:\n        argv: [touch, '{{ dir }}/x']\n"
        "        creates: '{{ dir }}/x'\n"
        "    - name: only without x\n      command:\n        cmd: 'touch {{ dir }}/y'\n"
        "        creates: '{{ dir }}/x'\n",
    )
    shell = Recording()
    report, _ = run(book, [local_target("box", vars={"dir": str(tmp_path)}, shell=shell)])
    assert counts(report) == (2, 1, 0, 0)
    assert not (tmp_path / "y").exists()  # the second task saw x, made by the first
    # the change's command and the next batch share one round trip, the batch after the command
    assert [argv[:2] for argv, _ in shell.calls] == [("sh", "-s"), ("sh", "-c")]
    script = shell.calls[1][0][2]
    assert script.index(f"touch {tmp_path}/x") < script.index(f"test -e {tmp_path}/x")


def shared_round_trip_book(tmp_path: Path, first: str) -> playbook.Playbook:
    """A command task (``first``, its argv in flow style), then one whose facts it may read with it."""
    return write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        f"    - name: first\n      command:\n        argv: {first}\n      register: r\n"
        "    - name: second\n      command:\n        argv: [touch, '{{ dir }}/second']\n"
        "        creates: '{{ dir }}/second'\n"
        "    - name: show\n      command:\n"
        "        argv: [sh, -c, 'printf %s \"$1\" > \"$2\"', sh, '{{ r.rc }}|{{ r.stdout }}|{{ r.stderr }}',"
        " '{{ dir }}/shown']\n",
    )


def test_a_command_that_shares_its_round_trip_registers_its_own_output(tmp_path: Path) -> None:
    book = shared_round_trip_book(tmp_path, "[sh, -c, 'printf out; printf err >&2']")
    shell = Recording()
    report, _ = run(book, [local_target("box", vars={"dir": str(tmp_path)}, shell=shell)])
    assert counts(report) == (3, 3, 0, 0)
    assert (tmp_path / "shown").read_text() == "0|out|err"
    # first's command reads second's facts; second's command runs alone (show, which needs r, reads none)
    assert [argv[:2] for argv, _ in shell.calls] == [
        ("sh", "-s"),
        ("sh", "-c"),
        ("touch", f"{tmp_path}/second"),
        ("sh", "-c"),
    ]
    report, _ = run(book, [local_target("box", vars={"dir": str(tmp_path)})])
    assert counts(report) == (3, 2, 0, 0)  # second: its marker file is there


def test_a_failing_command_that_shares_its_round_trip_is_reported_as_on_its_own(tmp_path: Path) -> None:
    book = shared_round_trip_book(tmp_path, "[sh, -c, 'echo to stdout; echo broken >&2; exit 3']")
    shell = Recording()
    report, text = run(book, [local_target("box", vars={"dir": str(tmp_path)}, shell=shell)])
    assert shell.calls[1][0][:2] == ("sh", "-c") and f"test -e {tmp_path}/second" in shell.calls[1][0][2]
    [failure] = report.failures()
    assert (failure.task, failure.rc, failure.stderr) == ("first", 3, "broken")
    assert failure.command == "sh -c 'echo to stdout; echo broken >&2; exit 3'"
    assert "fatal: [box] TASK [first]: FAILED! command failed (exit 3)" in text
    assert not (tmp_path / "second").exists() and not (tmp_path / "shown").exists()


def test_a_missing_program_fails_as_it_does_on_its_own(tmp_path: Path) -> None:
    book = shared_round_trip_book(tmp_path, "[no-such-program-here, x]")
    shell = Recording()
    report, _ = run(book, [local_target("box", vars={"dir": str(tmp_path)}, shell=shell)])
    assert shell.calls[-1][0] == ("no-such-program-here", "x")  # after the script that found it missing
    [failure] = report.failures()
    assert failure.task == "first" and "command not found: no-such-program-here" in failure.error


def test_a_shell_builtin_or_a_task_with_a_secret_runs_its_command_on_its_own(tmp_path: Path) -> None:
    book = shared_round_trip_book(tmp_path, "[echo, '-n', 'a\\tb']")
    shell = Recording()
    report, _ = run(book, [local_target("box", vars={"dir": str(tmp_path)}, shell=shell)])
    assert counts(report) == (3, 3, 0, 0)
    assert shell.calls[1][0] == ("echo", "-n", "a\\tb")  # the program, not sh's own echo
    assert (tmp_path / "shown").read_text() == "0|a\\tb|"
    (tmp_path / "second").unlink()
    book = shared_round_trip_book(tmp_path, "[sh, -c, 'cat > /dev/null']")
    shell = Recording()
    target = local_target("box", vars={"dir": str(tmp_path), "token": Secret("s3cret")}, shell=shell)
    report, _ = run(book, [target])
    assert shell.calls[1][0] == ("sh", "-c", "cat > /dev/null")


def test_a_task_that_needs_a_pending_register_waits_for_its_own_batch(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: a\n      command:\n        argv: [touch, '{{ dir }}/a']\n"
        "        creates: '{{ dir }}/a'\n"
        "      register: r\n"
        "    - name: b\n      command:\n        argv: [touch, '{{ dir }}/b{{ r.rc }}']\n"
        "        creates: '{{ dir }}/b{{ r.rc }}'\n"
        "    - name: c\n      command:\n        argv: [touch, '{{ dir }}/c']\n"
        "        creates: '{{ dir }}/c'\n",
    )
    for name in ("a", "b0", "c"):
        (tmp_path / name).touch()
    shell = Recording()
    report, _ = run(book, [local_target("box", vars={"dir": str(tmp_path)}, shell=shell)])
    assert counts(report) == (3, 0, 0, 0)
    first, second = shell.batches()
    assert f"{tmp_path}/a" in first and f"{tmp_path}/c" in first and "/b" not in first
    assert f"{tmp_path}/b0" in second and f"{tmp_path}/c" not in second


# --- failures ------------------------------------------------------------------------------------


def test_a_failing_task_stops_its_host_and_the_others_go_on(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- name: two plays\n  hosts: all\n  tasks:\n"
        "    - name: check\n      command: 'echo to stdout; echo broken on {{ inventory_hostname }} >&2; "
        "test {{ inventory_hostname }} != bad'\n"
        "    - name: after\n      command:\n"
        "        argv: [touch, '{{ dir }}/{{ inventory_hostname }}.after']\n"
        "- name: second\n  hosts: all\n  tasks:\n"
        "    - name: later play\n      command:\n"
        "        argv: [touch, '{{ dir }}/{{ inventory_hostname }}.later']\n",
    )
    targets = [local_target(name, vars={"dir": str(tmp_path)}) for name in ("good", "bad")]
    report, text = run(book, targets)
    assert report.failed_hosts == ["bad"]
    assert sorted(p.name for p in tmp_path.glob("*.after")) == ["good.after"]
    assert sorted(p.name for p in tmp_path.glob("*.later")) == ["good.later"]
    assert counts(report, "good") == (3, 3, 0, 0)
    assert counts(report, "bad") == (0, 0, 1, 0)
    [failure] = report.failures()
    assert (failure.host, failure.task, failure.rc) == ("bad", "check", 1)
    assert failure.command.startswith("sh -c 'echo to stdout;")
    assert failure.stderr == "broken on bad"
    assert failure.location == f"{tmp_path / 'play.yaml'}:4"
    assert "fatal: [bad] TASK [check]: FAILED! command failed (exit 1)" in text
    assert "      broken on bad\n" in text


def test_a_template_error_at_run_time_fails_that_host_with_file_and_line(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: read\n      command: echo\n      register: r\n"
        "    - name: use\n      command: 'echo {{ r.nope }}'\n",
    )
    report, _ = run(book, [local_target("box")])
    [failure] = report.failures()
    assert failure.error.startswith(f"{tmp_path / 'play.yaml'}:6: task 'use': undefined variable")
    assert "has no attribute 'nope'" in failure.error


def test_an_unreachable_host_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    gone = Host(name="gone", cluster="lab", address="127.0.0.1", port=port)
    shell = RemoteShell(gone, connect_timeout=2)
    unreachable = Target(name="gone", shell=shell, vars={"dir": str(tmp_path)})
    book = write(tmp_path, "- hosts: all\n  tasks:\n" + guarded_tasks(2))
    report, text = run(book, [unreachable, local_target("box", vars={"dir": str(tmp_path)})])
    assert report.failed_hosts == ["gone"]
    assert report.stats["gone"].unreachable == 1
    assert counts(report) == (2, 2, 0, 0)
    assert "fatal: [gone] TASK [t0]: UNREACHABLE! [gone] cannot connect to gone" in text


# --- secrets -------------------------------------------------------------------------------------


def scan_cmdlines(needle: bytes, stop: threading.Event, seen: list[bytes]) -> None:
    """Read every process's command line until ``stop``; keep those with ``needle`` or ``sleep``."""
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline or cmdline.startswith(b"sleep\x00"):
                seen.append(cmdline)


def test_a_secret_on_stdin_never_shows_in_argv_or_output(tmp_path: Path) -> None:
    token = "tok-" + secrets.token_hex(12)
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: store it\n      command:\n        cmd: 'cat > {{ dir }}/got; sleep 0.6'\n"
        "        stdin: '{{ token }}'\n"
        "    - name: leak it\n      command:\n"
        '        cmd: \'v=$(cat); echo "out $v"; echo "err $v" >&2; exit 4\'\n'
        "        stdin: 'Bearer {{ token }}'\n",
    )
    target = local_target("box", vars={"dir": str(tmp_path), "token": Secret(token)})
    stop = threading.Event()
    seen: list[bytes] = []
    scanner = threading.Thread(target=scan_cmdlines, args=(token.encode(), stop, seen))
    scanner.start()
    try:
        report, text = run(book, [target], diff=True)
    finally:
        stop.set()
        scanner.join()
    assert (tmp_path / "got").read_text() == token  # it did reach the command
    assert any(c.startswith(b"sleep\x00") for c in seen), "the scan never saw the task running"
    assert not [c for c in seen if token.encode() in c]
    [failure] = report.failures()
    assert failure.stderr == "err ***"
    everything = text + recap.as_json(report) + json.dumps([r.as_dict() for r in report.results])
    assert token not in everything
    assert "***" in everything


def test_a_secret_in_an_argument_that_is_not_secret_is_refused_and_never_runs(tmp_path: Path) -> None:
    token = "tok-" + secrets.token_hex(12)
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n    - name: argv\n      command:\n"
        "        argv: [touch, '{{ dir }}/{{ token }}']\n",
    )
    target = local_target("box", vars={"dir": str(tmp_path), "token": Secret(token)})
    report, text = run(book, [target])
    [failure] = report.failures()
    assert "argv gets a secret value, but module argument argv is not secret" in failure.error
    assert list(tmp_path.glob("tok-*")) == []
    assert token not in text


# --- keywords ------------------------------------------------------------------------------------


def test_handlers_run_once_at_the_end_of_the_play_when_notified(tmp_path: Path) -> None:
    log = tmp_path / "log"
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: one\n      command:\n        cmd: 'echo one >> {{ log }}; touch {{ log }}.1'\n"
        "        creates: '{{ log }}.1'\n      notify: restart\n"
        "    - name: two\n      command:\n        cmd: 'echo two >> {{ log }}; touch {{ log }}.2'\n"
        "        creates: '{{ log }}.2'\n      notify: [restart]\n"
        "    - name: three\n      command: 'echo three >> {{ log }}'\n"
        "  handlers:\n"
        "    - name: restart\n      command: 'echo restart >> {{ log }}'\n"
        "    - name: unused\n      command: 'echo unused >> {{ log }}'\n",
    )
    target = local_target("box", vars={"log": str(log)})
    report, text = run(book, [target])
    assert log.read_text().split() == ["one", "two", "three", "restart"]
    assert "changed: [box] RUNNING HANDLER [restart]" in text
    assert counts(report) == (4, 4, 0, 0)
    log.write_text("")
    report, text = run(book, [target])
    assert log.read_text().split() == ["three"]  # nothing notified: no handler
    report, text = run(book, [target], check=True)
    assert log.read_text().split() == ["three"]


def test_loop_register_and_when(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- hosts: all\n  vars:\n    names: [x, y, z]\n  tasks:\n"
        "    - name: each\n      command:\n        argv: [touch, '{{ dir }}/{{ item }}']\n"
        "      loop: '{{ names }}'\n      when: item != 'y'\n      register: made\n"
        "    - name: summary\n      command:\n"
        "        cmd: \"echo {{ made.results | rejectattr('skipped', 'defined')"
        " | map(attribute='item') | join(',') }} > {{ dir }}/summary\"\n"
        "      when: made.changed\n"
        "    - name: never\n      command: 'touch {{ dir }}/never'\n      when: made.skipped\n",
    )
    report, text = run(book, [local_target("box", vars={"dir": str(tmp_path)})])
    assert (tmp_path / "summary").read_text() == "x,z\n"
    assert not (tmp_path / "y").exists() and not (tmp_path / "never").exists()
    assert "skipping: [box] TASK [each] => (item=y)" in text
    assert counts(report) == (2, 2, 0, 1)


def test_tags_and_limit_choose_what_runs(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: a\n      command: 'touch {{ dir }}/{{ inventory_hostname }}.a'\n      tags: [a]\n"
        "    - name: b\n      command: 'touch {{ dir }}/{{ inventory_hostname }}.b'\n      tags: b\n"
        "    - name: always\n      command: 'touch {{ dir }}/{{ inventory_hostname }}.always'\n"
        "      tags: always\n"
        "    - name: untagged\n      command: 'touch {{ dir }}/{{ inventory_hostname }}.none'\n",
    )
    targets = [
        local_target("one", vars={"dir": str(tmp_path)}, groups=["lab"]),
        local_target("two", vars={"dir": str(tmp_path)}, groups=["phx"]),
    ]
    report, _ = run(book, targets, tags=frozenset({"a"}), limit=("lab",))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "play.yaml") == ["one.a", "one.always"]
    assert list(report.stats) == ["one"]


def test_hosts_run_in_parallel_and_see_each_other_s_variables(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: slow\n"
        '      command: "sleep 1; echo {{ hostvars[peer].colour }} > {{ dir }}/{{ inventory_hostname }}"\n',
    )
    targets = [
        local_target("a", vars={"dir": str(tmp_path), "colour": "red", "peer": "b"}),
        local_target("b", vars={"dir": str(tmp_path), "colour": "blue", "peer": "a"}),
    ]
    started = time.monotonic()
    run(book, targets)
    assert time.monotonic() - started < 1.8
    assert (tmp_path / "a").read_text() == "blue\n" and (tmp_path / "b").read_text() == "red\n"


def test_become_runs_every_command_under_sudo_for_a_user_that_is_not_root(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- name: plain\n  hosts: all\n  tasks:\n"
        + guarded_tasks(1, "plain")
        + "- name: as root\n  hosts: all\n  become: true\n  tasks:\n"
        + guarded_tasks(1, "root"),
    )
    root_shell, user_shell = Recording(), Recording()
    targets = [
        Target(name="root", shell=root_shell, vars={"dir": str(tmp_path)}, user="root"),
        Target(name="deploy", shell=user_shell, vars={"dir": str(tmp_path)}, user="deploy"),
    ]
    report, _ = run(book, targets)
    commands = [argv for argv, _ in user_shell.calls]
    assert commands[0] == ("sh", "-s")  # the first play does not become
    assert commands[-1][:4] == ("sudo", "-n", "--", "sh")
    assert all(argv[0] != "sudo" for argv, _ in root_shell.calls)  # root needs no sudo
    assert counts(report, "root") == (2, 2, 0, 0)


def test_fetch_copies_a_file_back_0600(tmp_path: Path, scratch_modules: None) -> None:
    source = tmp_path / "remote.bin"
    source.write_bytes(b"\x00\x01binary\xff\n")
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n    - name: get\n      scratch_fetch:\n        src: '{{ src }}'\n"
        "        dest: fetched/copy.bin\n",
    )
    report, _ = run(book, [local_target("box", vars={"src": str(source)})])
    copy = tmp_path / "fetched" / "copy.bin"  # relative to the playbook's folder
    assert copy.read_bytes() == b"\x00\x01binary\xff\n"
    assert os.stat(copy).st_mode & 0o777 == 0o600
    assert counts(report) == (1, 1, 0, 0)


def test_vars_precedence(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- hosts: all\n  vars:\n    colour: green\n    shade: 'dark {{ colour }}'\n  tasks:\n"
        "    - name: show\n"
        '      command: "echo {{ shade }} {{ size }} {{ fluxops_cluster }} > {{ dir }}/out"\n',
    )
    target = Target(
        name="box",
        shell=local(),
        vars={"colour": "red", "size": "xl", "dir": str(tmp_path)},
        cluster="lab",
        role="server",
    )
    run(book, [target])
    assert (tmp_path / "out").read_text() == "dark green xl lab\n"  # play vars over inventory vars


def test_a_loop_over_no_items_is_skipped(tmp_path: Path) -> None:
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: nothing to do\n      command: 'touch {{ item }}'\n      loop: []\n",
    )
    report, text = run(book, [local_target("box")])
    assert "skipping: [box] TASK [nothing to do]" in text
    assert counts(report) == (0, 0, 0, 1)


def test_a_no_log_result_stays_secret_from_host_to_host(tmp_path: Path) -> None:
    token = "K10" + secrets.token_hex(16)
    (tmp_path / "node-token").write_text(token + "\n")
    book = write(
        tmp_path,
        "- name: server\n  hosts: server\n  tasks:\n"
        "    - name: read the token\n      command: 'cat {{ dir }}/node-token'\n"
        "      register: node_token\n      no_log: true\n"
        "- name: agents\n  hosts: agent\n  vars:\n"
        "    token: \"{{ hostvars[groups['server'][0]].node_token.stdout | trim }}\"\n  tasks:\n"
        "    - name: join\n      command:\n        cmd: 'cat > {{ dir }}/joined-{{ inventory_hostname }}'\n"
        "        stdin: '{{ token }}'\n"
        "    - name: on a command line\n      command:\n        argv: [echo, '{{ token }}']\n",
    )
    targets = [
        local_target("server", vars={"dir": str(tmp_path)}, groups=["server"]),
        local_target("agent1", vars={"dir": str(tmp_path)}, groups=["agent"]),
    ]
    report, text = run(book, targets, diff=True)
    assert (tmp_path / "joined-agent1").read_text() == token
    assert "changed: [server] TASK [read the token]: (output hidden: no_log)" in text
    [failure] = report.failures()
    assert failure.host == "agent1"
    assert "argv gets a secret value" in failure.error
    assert token not in text + recap.as_json(report)
