"""Playbooks are loaded and checked before anything runs: every mistake names its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxops.errors import PlaybookError
from fluxops.masking import Secret
from fluxops.runner import execute, playbook
from fluxops.runner.execute import Options
from fluxops.runner.targets import local_target

# A first play that would leave a marker file: a bad playbook must stop before it runs.
FIRST = """\
- name: first
  hosts: all
  tasks:
    - name: leave a marker
      command:
        argv: [touch, "{marker}"]
"""

# (case, text after FIRST, line of the error, words the message must hold); lines count from 1 at FIRST
BAD = [
    (
        "unknown module",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      comand: {cmd: x}\n",
        11,
        "unknown module or keyword 'comand' (did you mean 'command'?)",
    ),
    (
        "no module",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      when: true\n",
        10,
        "task 't': no module: name one of",
    ),
    (
        "unknown argument",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command:\n        cmd: x\n"
        "        creates_: /x\n",
        13,
        "module command has no argument 'creates_' (did you mean 'creates'?)",
    ),
    (
        "missing argument",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command:\n        creates: /x\n",
        10,
        "module command needs exactly one of argv (a list) and cmd (a string)",
    ),
    (
        "wrong type (a string for a list)",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command:\n        argv: echo hi\n",
        12,
        "argv: expected a list, got str",
    ),
    (
        "wrong type (a number for a string)",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command:\n        cmd: 5\n",
        12,
        "cmd: expected a string, got int",
    ),
    (
        "undefined variable in an argument",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command:\n        cmd: 'echo {{ nope }}'\n",
        12,
        "undefined variable 'nope' on host box",
    ),
    (
        "undefined variable in a condition",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: echo\n      when: nope_var > 1\n",
        12,
        "undefined variable 'nope_var' on host box",
    ),
    (
        "registered only by a later task",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: 'echo {{ r.rc }}'\n"
        "    - name: u\n      command: echo\n      register: r\n",
        11,
        "task 'u' registers it only later",
    ),
    (
        "item outside a loop",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: 'echo {{ item }}'\n",
        11,
        "item is defined only in a task with loop",
    ),
    (
        "notify of a missing handler",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: echo\n      notify: restart\n"
        "  handlers:\n    - name: reload\n      command: echo\n",
        12,
        "notify names 'restart', which is no handler of this play (handlers: reload)",
    ),
    (
        "unknown hosts",
        "- name: p\n  hosts: nowhere\n  tasks: []\n",
        8,
        "hosts: nowhere is no host, group, cluster or role",
    ),
    (
        "YAML syntax",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: [unclosed\n",
        12,
        "YAML error",
    ),
    (
        "template syntax",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command:\n        cmd: 'echo {{ x '\n",
        11,
        "template error",
    ),
    (
        "unknown play keyword",
        "- name: p\n  hosts: all\n  task: []\n",
        9,
        "unknown play keyword 'task' (did you mean 'tasks'?)",
    ),
    (
        "secret to an argument that is not secret",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command:\n        cmd: !secret hunter22\n",
        12,
        "cmd gets a secret value, but module argument cmd is not secret",
    ),
    (
        "register that is no name",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: echo\n      register: 'a-b'\n",
        12,
        "register must be a variable name",
    ),
    (
        "loop that is no list",
        "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: echo\n      loop: 5\n",
        12,
        "loop must be a list or a template",
    ),
    (
        "handler without a name",
        "- name: p\n  hosts: all\n  tasks: []\n  handlers:\n    - command: echo\n",
        11,
        "a handler needs a name",
    ),
    (
        "two handlers of one name",
        "- name: p\n  hosts: all\n  tasks: []\n  handlers:\n    - name: h\n      command: echo\n"
        "    - name: h\n      command: echo\n",
        13,
        "handler names must be unique",
    ),
    (
        "hosts missing",
        "- name: p\n  tasks: []\n",
        7,
        "hosts is missing",
    ),
    (
        "play vars using an undefined variable",
        "- name: p\n  hosts: all\n  vars:\n    a: '{{ b }}'\n  tasks: []\n",
        9,
        "vars.a: undefined variable 'b' on host box",
    ),
]


@pytest.mark.parametrize(("case", "text", "line", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_playbook_is_refused_with_file_and_line_before_anything_runs(
    tmp_path: Path, case: str, text: str, line: int, words: str
) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "play.yaml"
    path.write_text(FIRST.format(marker=marker) + text)
    with pytest.raises(PlaybookError) as caught:
        execute.run(playbook.load(path), [local_target("box")])
    error = caught.value
    assert (error.path, error.line) == (str(path), line), str(error)
    assert str(error).startswith(f"{path}:{line}: ")
    assert words in str(error)
    assert not marker.exists(), f"{case}: the first play ran before the error was found"


def test_register_of_a_task_left_out_by_tags_is_undefined(tmp_path: Path) -> None:
    path = tmp_path / "play.yaml"
    path.write_text(
        "- hosts: all\n  tasks:\n"
        "    - name: read\n      command: echo 1\n      register: r\n      tags: [read]\n"
        "    - name: use\n      command: 'echo {{ r.stdout }}'\n      tags: [use]\n"
    )
    with pytest.raises(PlaybookError, match="which --tags leaves out") as caught:
        execute.run(playbook.load(path), [local_target("box")], Options(tags=frozenset({"use"})))
    assert caught.value.line == 8


def test_unknown_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "play.yaml"
    path.write_text("- hosts: all\n  tasks: []\n")
    with pytest.raises(
        PlaybookError, match=r"--limit elsewhere: no such host.*known: all, server, agent, box"
    ):
        execute.run(playbook.load(path), [local_target("box")], Options(limit=("elsewhere",)))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "the playbook is empty"),
        ("hosts: all\n", "a playbook is a list of plays"),
        ("[]\n", "the playbook has no plays"),
        ("- just a string\n", "play 1 is a str"),
    ],
)
def test_a_playbook_must_be_a_list_of_plays(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "play.yaml"
    path.write_text(text)
    with pytest.raises(PlaybookError, match=words) as caught:
        playbook.load(path)
    assert caught.value.path == str(path)


def test_missing_file_is_a_playbook_error(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="cannot read"):
        playbook.load(tmp_path / "absent.yaml")


def test_guarded_names_registered_names_and_loop_items_are_known(tmp_path: Path) -> None:
    path = tmp_path / "play.yaml"
    path.write_text(
        "- hosts: all\n  vars:\n    base: '{{ root }}/x'\n    again: '{{ base }}/y'\n  tasks:\n"
        "    - name: read\n      command: echo 1\n      register: r\n"
        "    - name: guarded\n      command: 'echo {{ maybe | default(1) }} {{ r.stdout }}'\n"
        "      when: other is defined\n"
        "    - name: items\n      command: 'echo {{ item }} {{ again }} {{ inventory_hostname }}'\n"
        "      loop: '{{ groups.all }}'\n"
        "- hosts: box\n  tasks:\n    - name: earlier play's register\n      command: 'echo {{ r.rc }}'\n"
    )
    book = playbook.load(path)
    report = execute.run(book, [local_target("box", vars={"root": str(tmp_path)})])
    assert report.failed_hosts == []
    stats = report.stats["box"]
    assert (stats.ok, stats.changed, stats.skipped) == (3, 3, 1)


def test_free_form_command_and_task_fields(tmp_path: Path) -> None:
    path = tmp_path / "play.yaml"
    path.write_text(
        "- name: p\n  hosts: lab:&server\n  become: yes\n  tasks:\n"
        "    - name: t\n      command: uname -a\n      tags: a, b\n      notify: [h]\n"
        "      when: [true, 'x == 1']\n"
        "  handlers:\n    - name: h\n      command: {argv: [true]}\n"
    )
    play = playbook.load(path).plays[0]
    task = play.tasks[0]
    assert play.hosts == ("lab", "&server")
    assert play.become is True
    assert task.args == {"cmd": "uname -a"}
    assert task.tags == {"a", "b"}
    assert task.notify == ("h",)
    assert task.when == (True, "x == 1")
    assert task.line == 5
    assert task.arg_lines == {"cmd": 6}
    assert play.handlers[0].handler is True


def test_secret_tag_reaches_a_secret_argument_as_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "play.yaml"
    path.write_text(
        "- hosts: all\n  tasks:\n    - command:\n        cmd: cat\n        stdin: !secret hunter22\n"
    )
    task = playbook.load(path).plays[0].tasks[0]
    assert task.args["stdin"] == Secret("hunter22")
    assert "hunter22" not in repr(task.args)
