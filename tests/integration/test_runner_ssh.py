"""The runner over real SSH to the sandbox hosts: four steps, one connection per host, secrets, failures."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from fluxops.masking import Secret
from fluxops.runner import batch, execute, playbook, recap
from fluxops.runner.execute import Options
from fluxops.runner.modules._files import CONTENT_CAP, file_fact, parse_file_state
from fluxops.runner.results import Report
from fluxops.runner.targets import Target, from_inventory
from fluxops.shell import Connections, RemoteShell, Result, Shell

pytestmark = pytest.mark.ssh
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def conns() -> Iterator[Connections]:
    """One connection pool for the test: every run of the test reuses its connections."""
    with Connections(connect_timeout=10) as pool:
        yield pool


@pytest.fixture
def targets(sandbox_env, conns: Connections) -> list[Target]:
    """Every sandbox host, with a folder of its own for this test on the host."""
    found = from_inventory(sandbox_env.inventory, conns)
    assert len(found) >= 2, "the sandbox inventory has fewer than two hosts"
    return found


def write(tmp_path: Path, text: str) -> playbook.Playbook:
    path = tmp_path / "play.yaml"
    path.write_text(text)
    return playbook.load(path)


def run(book: playbook.Playbook, targets: list[Target], **options: object) -> tuple[Report, str]:
    out = io.StringIO()
    console = Console(file=out, color_system=None, width=200)
    reporter = recap.TextReporter(console, check=bool(options.get("check")))
    report = execute.run(book, targets, Options(**options), reporter)  # type: ignore[arg-type]
    reporter.recap(report)
    return report, out.getvalue()


def on_host(target: Target, *argv: str) -> str:
    return target.shell.run(list(argv), timeout=30).stdout


def test_four_steps_on_every_host_over_one_connection_each(
    tmp_path: Path, sandbox_env, targets: list[Target], conns: Connections
) -> None:
    folder = f"/var/tmp/fluxops-runner-{secrets.token_hex(4)}"
    book = write(
        tmp_path,
        f"- name: converge\n  hosts: all\n  vars:\n    folder: {folder}\n  tasks:\n"
        "    - name: folder\n      file: {path: '{{ folder }}', state: directory, mode: '0755'}\n"
        "    - name: config\n      file:\n        path: '{{ folder }}/config.yaml'\n"
        '        content: "node-name: {{ inventory_hostname }}\\nrole: {{ fluxops_role }}\\n"\n'
        "    - name: marker\n      command:\n        argv: [touch, '{{ folder }}/marker']\n"
        "        creates: '{{ folder }}/marker'\n",
    )
    names = [t.name for t in targets]
    pairs = list(zip(targets, sandbox_env.inventory.hosts, strict=True))

    report, text = run(book, targets, check=True, diff=True)
    assert {h: (s.ok, s.changed) for h, s in report.stats.items()} == {n: (3, 3) for n in names}
    assert "+node-name: " in text
    first_connections = {t.name: conns.get(host).connection() for t, host in pairs}
    assert on_host(targets[0], "sh", "-c", f"test -e {folder} && echo present || echo absent") == "absent\n"

    report, _ = run(book, targets)
    assert {h: (s.ok, s.changed) for h, s in report.stats.items()} == {n: (3, 3) for n in names}
    for target in targets:
        assert on_host(target, "cat", f"{folder}/config.yaml") == (
            f"node-name: {target.name}\nrole: {target.role}\n"
        )
    report, text = run(book, targets, check=True, diff=True)
    assert {h: (s.ok, s.changed) for h, s in report.stats.items()} == {n: (3, 0) for n in names}
    assert "+node-name" not in text
    report, _ = run(book, targets)
    assert {h: (s.ok, s.changed) for h, s in report.stats.items()} == {n: (3, 0) for n in names}
    assert {t.name: conns.get(host).connection() for t, host in pairs} == first_connections
    for target in targets:
        on_host(target, "rm", "-rf", folder)


def test_the_file_facts_of_a_batch_read_on_a_host_answer_as_each_fact_alone(targets: list[Target]) -> None:
    """On a real host, one perl process reads every file fact of a batch as each fact's own snippet does."""
    target = targets[0]
    folder = f"/var/tmp/fluxops-runner-{secrets.token_hex(4)}"
    on_host(
        target,
        "sh",
        "-c",
        f"mkdir {folder} && cd {folder} && printf 'a\\nb\\n' > text && printf '\\000\\377x' > binary"
        f" && : > empty && head -c {CONTENT_CAP + 1} /dev/zero > big && chown 54321:54322 text"
        " && chmod 4751 binary && mkdir dir && mkfifo fifo && ln -s text link && ln -s nowhere dangling",
    )
    names = ["text", "binary", "empty", "big", "dir", "fifo", "link", "dangling", "absent", "text/x"]
    facts = [
        file_fact(f"{name}|{content}|{sha256}", f"{folder}/{name}", content=content, sha256=sha256)
        for name in names
        for content in (True, False)
        for sha256 in (True, False)
    ]
    snippets = [batch.Snippet(f.key, f.script, f.isolated, f.reader, f.request) for f in facts]
    marker = batch.new_marker()
    script = batch.script(snippets, marker)
    assert on_host(target, "sh", "-c", "command -v perl").strip()
    together = batch.parse(target.shell.run(["sh", "-s"], stdin=script, timeout=30).stdout, snippets, marker)
    alone = {}
    for fact in facts:
        result = target.shell.run(["sh", "-c", fact.script], timeout=30, check=False)
        alone[fact.key] = batch.Answer(result.stdout, result.rc)
    on_host(target, "rm", "-rf", folder)
    assert together == alone
    assert parse_file_state(together["text|True|False"].stdout, 0).owner == "UNKNOWN"
    assert parse_file_state(together["binary|True|False"].stdout, 0).content == b"\x00\xffx"


class Counting:
    """A host's shell that keeps the argv of every command it runs."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.name = shell.name
        self.argvs: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> Result:
        self.argvs.append(tuple(argv))
        return self.shell.run(argv, **kwargs)


def test_a_change_reads_the_next_facts_in_its_own_round_trip(tmp_path: Path, targets: list[Target]) -> None:
    """Each change's command carries the next task's fact batch; output, failures and reruns as before."""
    target = targets[0]
    folder = f"/var/tmp/fluxops-runner-{secrets.token_hex(4)}"
    book = write(
        tmp_path,
        f"- hosts: all\n  vars:\n    folder: {folder}\n  tasks:\n"
        "    - name: folder\n      file: {path: '{{ folder }}', state: directory, mode: '0755'}\n"
        "    - name: files\n      file: {path: '{{ folder }}/{{ item }}', content: '{{ item }}'}\n"
        "      loop: [a, b, c]\n"
        "    - name: talk\n      command:\n"
        "        argv: [sh, -c, 'cat {{ folder }}/a; printf err >&2', sh]\n"
        "        creates: '{{ folder }}/talked'\n      register: talk\n"
        "    - name: keep\n      command:\n"
        '        argv: [sh, -c, \'printf %s "$1" > "$2"; test -e "$2.fail" && exit 5 || touch "$2.ok"\','
        " sh, '{{ talk.rc }}|{{ talk.stdout }}|{{ talk.stderr }}', '{{ folder }}/talked']\n"
        "        creates: '{{ folder }}/talked.ok'\n"
        "    - name: last\n      file: {path: '{{ folder }}/last', content: 'x'}\n",
    )
    counting = Counting(target.shell)
    one = Target(target.name, counting, target.vars, target.groups, target.cluster, target.role, target.user)
    report, _ = run(book, [one])
    assert (report.stats[one.name].ok, report.stats[one.name].changed) == (5, 5)
    assert on_host(target, "cat", f"{folder}/talked") == "0|a|err"
    # a batch; the folder, a, b and c carry the next facts; talk runs alone (keep needs its register);
    # keep's batch; keep carries last's facts; last runs alone (nothing comes after it)
    assert len(counting.argvs) == 9
    assert sum(argv[:2] == ("sh", "-c") and "fluxops-fact-" in argv[2] for argv in counting.argvs) == 5
    report, _ = run(book, [one])
    assert (report.stats[one.name].ok, report.stats[one.name].changed) == (5, 0)
    on_host(target, "sh", "-c", f"rm {folder}/talked* {folder}/last && touch {folder}/talked.fail")
    report, _ = run(book, [one])
    [failure] = report.failures()
    assert (failure.task, failure.rc) == ("keep", 5)
    assert failure.command.startswith("sh -c 'printf %s")
    on_host(target, "rm", "-rf", folder)


def test_a_secret_on_stdin_never_shows_in_any_process_or_output(
    tmp_path: Path, targets: list[Target]
) -> None:
    token = "tok-" + secrets.token_hex(12)
    folder = f"/var/tmp/fluxops-runner-{secrets.token_hex(4)}"
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        "    - name: join\n      command:\n"
        f"        cmd: 'mkdir -p {folder} && cat > {folder}/token && sleep 1.5'\n"
        "        stdin: '{{ join_token }}'\n",
    )
    secret_targets = [
        Target(t.name, t.shell, {**t.vars, "join_token": Secret(token)}, t.groups, t.cluster, t.role, t.user)
        for t in targets
    ]
    stop = threading.Event()
    seen: list[bytes] = []
    scanner = threading.Thread(target=_scan, args=(token.encode(), stop, seen))
    scanner.start()
    try:
        report, text = run(book, secret_targets)
    finally:
        stop.set()
        scanner.join()
    assert report.failed_hosts == []
    assert any(c.startswith(b"sleep\x00") for c in seen), "the scan never saw the task running"
    assert not [c for c in seen if token.encode() in c]
    for target in targets:
        assert on_host(target, "cat", f"{folder}/token") == token
        on_host(target, "rm", "-rf", folder)
    assert token not in text + recap.as_json(report)


def test_a_failing_host_stops_and_the_others_finish(tmp_path: Path, targets: list[Target]) -> None:
    bad = targets[0].name
    folder = f"/var/tmp/fluxops-runner-{secrets.token_hex(4)}"
    book = write(
        tmp_path,
        "- hosts: all\n  tasks:\n"
        f"    - name: refuse on {bad}\n      command: 'echo refused by $(hostname) >&2; "
        f"test {{{{ inventory_hostname }}}} != {bad}'\n"
        f"    - name: after\n      command: 'mkdir -p {folder} && touch {folder}/after'\n",
    )
    report, text = run(book, targets)
    assert report.failed_hosts == [bad]
    [failure] = report.failures()
    assert (failure.host, failure.rc) == (bad, 1)
    assert failure.stderr.startswith("refused by ")
    assert f"fatal: [{bad}] TASK [refuse on {bad}]: FAILED!" in text
    for target in targets[1:]:
        assert on_host(target, "sh", "-c", f"test -e {folder}/after && echo yes") == "yes\n"
        on_host(target, "rm", "-rf", folder)
    assert on_host(targets[0], "sh", "-c", f"test -e {folder} && echo yes || echo no") == "no\n"


def _scan(needle: bytes, stop: threading.Event, seen: list[bytes]) -> None:
    """Every command line on this machine (the sandbox hosts' processes included) until ``stop``."""
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


def test_invoke_play_on_the_sandbox_inventory(tmp_path: Path, sandbox_env) -> None:
    folder = f"/var/tmp/fluxops-runner-{secrets.token_hex(4)}"
    book = tmp_path / "play.yaml"
    book.write_text(
        "- name: servers only\n  hosts: server\n  tasks:\n"
        f"    - name: marker\n      command:\n        argv: [mkdir, -p, {folder}]\n"
        f"        creates: {folder}\n"
    )
    servers = sorted(h.name for h in sandbox_env.inventory.hosts if h.role == "server")
    command = [
        sys.executable,
        "-m",
        "invoke",
        "play",
        str(book),
        "-i",
        str(sandbox_env.inventory_path),
        "--json",
    ]
    for changed in (1, 0):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        recap_ = json.loads(result.stdout)["recap"]
        assert sorted(recap_) == servers
        assert {r["changed"] for r in recap_.values()} == {changed}
    for host in sandbox_env.inventory.hosts:
        if host.role == "server":
            RemoteShell(host).run(["rm", "-rf", folder], timeout=30)
