"""The recap and progress lines, as Ansible prints them; the JSON report."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

from rich.console import Console

from fluxops.runner import recap
from fluxops.runner.playbook import Play
from fluxops.runner.results import HostStats, Report, Status, TaskResult


def result(status: Status, **fields: object) -> TaskResult:
    return TaskResult(
        host=str(fields.pop("host", "n5")), play="p", task="write config", status=status, **fields
    )


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, color_system=None, width=60, highlight=False), out


def test_recap_counts_as_ansible_does() -> None:
    stats = HostStats()
    for status in (Status.OK, Status.CHANGED, Status.CHANGED, Status.SKIPPED):
        stats.count(status)
    assert (stats.ok, stats.changed, stats.skipped, stats.failed) == (3, 2, 1, 0)  # ok includes changed
    stats.count(Status.UNREACHABLE)
    assert (stats.ok, stats.unreachable) == (3, 1)


def test_recap_lines_are_ansible_s() -> None:
    report = Report()
    for status in (Status.OK, Status.CHANGED):
        report.count("n5", status)
    report.count("phx1", Status.FAILED)
    lines = recap.recap_lines(report)
    assert lines[0].startswith("PLAY RECAP ****") and len(lines[0]) == 80
    assert (
        lines[1] == "n5                         : ok=2    changed=1    unreachable=0    failed=0    skipped=0"
    )
    assert (
        lines[2] == "phx1                       : ok=0    changed=0    unreachable=0    failed=1    skipped=0"
    )
    assert report.failed_hosts == ["phx1"]


def test_task_lines() -> None:
    assert recap.task_line(result(Status.OK)) == "ok: [n5] TASK [write config]"
    assert recap.task_line(result(Status.CHANGED, summary="write /etc/x")) == (
        "changed: [n5] TASK [write config]: write /etc/x"
    )
    assert (
        recap.task_line(result(Status.SKIPPED, item="a")) == "skipping: [n5] TASK [write config] => (item=a)"
    )
    assert recap.task_line(result(Status.FAILED, error="command failed (exit 3)")) == (
        "fatal: [n5] TASK [write config]: FAILED! command failed (exit 3)"
    )
    assert recap.task_line(result(Status.UNREACHABLE, error="cannot connect")).endswith(
        "UNREACHABLE! cannot connect"
    )
    assert (
        recap.task_line(result(Status.CHANGED, handler=True))
        == "changed: [n5] RUNNING HANDLER [write config]"
    )


def test_progress_shows_diffs_and_failure_details_without_markup_or_wrapping(tmp_path: Path) -> None:
    console, out = plain_console()
    reporter = recap.TextReporter(console, check=True)
    reporter.play_started(Play(name="node [prep]", hosts=("all",), path=tmp_path, line=1), ["n5", "phx1"])
    reporter.task_done(result(Status.CHANGED, diff="--- a\n+++ b\n@@ -1 +1 @@\n-old [red]\n+new\n"))
    long_command = "sh -c " + "x" * 100
    reporter.task_done(
        result(
            Status.FAILED,
            host="phx1",
            error="command failed (exit 3)",
            command=long_command,
            rc=3,
            stderr="one\ntwo",
            location="play.yaml:7",
        )
    )
    text = out.getvalue()
    assert "PLAY [node [prep]] ****" in text
    assert "hosts: n5, phx1 (check mode: nothing is changed)" in text
    assert "-old [red]\n+new\n" in text
    assert f"    command: {long_command}\n" in text  # one line, however narrow the console
    assert "    at play.yaml:7\n    command:" in text
    assert "    rc: 3\n    stderr:\n      one\n      two\n" in text


def test_lines_from_many_threads_never_mix() -> None:
    console, out = plain_console()
    reporter = recap.TextReporter(console)
    diff = "".join(f"+line {i}\n" for i in range(20))

    def emit(host: str) -> None:
        for _ in range(20):
            reporter.task_done(result(Status.CHANGED, host=host, diff=diff))

    threads = [threading.Thread(target=emit, args=(f"h{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    blocks = out.getvalue().split("changed: [")[1:]
    assert len(blocks) == 80
    for block in blocks:
        assert block.splitlines()[1:] == [f"+line {i}" for i in range(20)]


def test_json_report() -> None:
    report = Report(check=True)
    report.add(result(Status.CHANGED, summary="write /etc/x", diff="+x\n"))
    report.count("n5", Status.CHANGED)
    data = json.loads(recap.as_json(report))
    assert data["check"] is True
    assert data["changed"] == 1
    assert data["recap"] == {"n5": {"ok": 1, "changed": 1, "unreachable": 0, "failed": 0, "skipped": 0}}
    assert data["results"] == [
        {
            "host": "n5",
            "play": "p",
            "task": "write config",
            "status": "changed",
            "summary": "write /etc/x",
            "diff": "+x\n",
            "rc": None,
        }
    ]
