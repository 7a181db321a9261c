"""Checks that need the hosts, made before anything runs anywhere: host patterns and undefined names.

A template may use a host's inventory variables, the facts, the play's variables, names an earlier
task registers (in this play or an earlier one the host is in) and, inside a ``loop``, ``item``.
Anything else is an undefined variable, reported with the file and line of the value that uses it.
Names guarded by ``is defined`` or given a ``default`` may be missing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from fluxops.errors import PlaybookError
from fluxops.runner import templating
from fluxops.runner.playbook import ALWAYS_TAG, Play, Playbook, Task
from fluxops.runner.targets import Target, known_patterns, select, unknown_patterns
from fluxops.runner.variables import FACT_NAMES, LOOP_VAR


@dataclass(frozen=True)
class Selection:
    """A play with the targets it runs on (after ``--limit``) and its tasks (after ``--tags``)."""

    play: Play
    targets: tuple[Target, ...]
    tasks: tuple[Task, ...]


def selected(task: Task, tags: Collection[str]) -> bool:
    """Whether ``--tags`` keeps ``task`` (no tags, ``all``, a shared tag, or the task's ``always``)."""
    return not tags or "all" in tags or ALWAYS_TAG in task.tags or bool(task.tags & set(tags))


def task_names(task: Task) -> set[str]:
    """Every variable the task's arguments, loop and condition use (``item`` included)."""
    return templating.names_in(task.args) | templating.names_in(task.loop) | _when_names(task)


def _when_names(task: Task) -> set[str]:
    return set().union(*(templating.names_in_condition(c) for c in task.when)) if task.when else set()


def check(
    playbook: Playbook,
    targets: Sequence[Target],
    *,
    limit: Sequence[str] = (),
    tags: Collection[str] = (),
) -> list[Selection]:
    """Each play's hosts and tasks; PlaybookError for an unknown pattern or an undefined variable."""
    unknown = unknown_patterns(targets, limit)
    if unknown:
        raise PlaybookError(
            f"--limit {', '.join(unknown)}: no such host, group, cluster or role "
            f"(known: {', '.join(known_patterns(targets))})"
        )
    limited = {t.name for t in (select(targets, limit) if limit else targets)}
    registered: dict[str, set[str]] = {t.name: set() for t in targets}
    selections = []
    for play in playbook.plays:
        unknown = unknown_patterns(targets, play.hosts)
        if unknown:
            raise play.error(
                f"hosts: {', '.join(unknown)} is no host, group, cluster or role of the inventory "
                f"(known: {', '.join(known_patterns(targets))})",
                "hosts",
            )
        chosen = [t for t in select(targets, play.hosts) if t.name in limited]
        tasks = tuple(t for t in play.tasks if selected(t, tags))
        kept = {id(t) for t in tasks}
        left_out = {t.register: t for t in play.tasks if t.register and id(t) not in kept}
        for target in chosen:
            _check_host(play, tasks, target, registered[target.name], left_out)
        selections.append(Selection(play=play, targets=tuple(chosen), tasks=tasks))
    return selections


def _check_host(
    play: Play, tasks: Sequence[Task], target: Target, registered: set[str], left_out: dict[str, Task]
) -> None:
    """Undefined names on one host; adds the play's registered names to ``registered``."""
    known = set(target.vars) | FACT_NAMES | registered
    for name, value in play.vars.items():
        missing = templating.names_in(value) - known
        if missing:
            raise play.error(
                f"vars.{name}: undefined variable {sorted(missing)[0]!r} on host {target.name}", "vars"
            )
        known.add(name)
    later = {t.register: t for t in tasks if t.register}
    for task in tasks:
        _check_task(task, known, target, left_out, later)
        if task.register:
            known.add(task.register)
    every = known | {t.register for t in play.tasks if t.register}
    for handler in play.handlers:
        _check_task(handler, every, target, left_out, later)
        if handler.register:
            every.add(handler.register)
    registered |= {t.register for t in (*tasks, *play.handlers) if t.register}


def _check_task(
    task: Task, known: set[str], target: Target, left_out: dict[str, Task], later: dict[str, Task]
) -> None:
    with_item = known | {LOOP_VAR} if task.loop is not None else known
    fields: list[tuple[set[str], set[str], int | None]] = [
        (templating.names_in(task.loop), known, task.lines.get("loop")),
        (_when_names(task), with_item, task.lines.get("when")),
    ]
    for arg, value in task.args.items():
        fields.append((templating.names_in(value), with_item, task.arg_lines.get(arg)))
    for names, allowed, line in fields:
        missing = sorted(names - allowed)
        if missing:
            raise task.error(_undefined(missing[0], target, left_out, later, task), line)


def _undefined(
    name: str, target: Target, left_out: dict[str, Task], later: dict[str, Task], task: Task
) -> str:
    text = f"undefined variable {name!r} on host {target.name}"
    if name in left_out:
        return f"{text}: it is registered by task {left_out[name].name!r}, which --tags leaves out"
    if name in later and later[name] is not task:
        return f"{text}: task {later[name].name!r} registers it only later"
    if name == LOOP_VAR:
        return f"{text}: item is defined only in a task with loop"
    return text
