"""Runs a playbook: plays one after another, the hosts of a play in parallel (a thread each).

On each host the tasks run in order. Before a task's plan is made, its facts are read from the host
together with the facts of every later task of the play that does not depend on a result registered
in between: one ``sh`` script, one round trip (see ``batch``). Those facts stay valid until a task
changes the host; then the next task gathers again, in the round trip of the change's last command
where that command can share it (see ``follow``). In check mode plans are only shown (with their
diffs), so one batch serves the whole play. A failing task stops its host and is reported with the
command (secrets masked), exit code and stderr tail; the other hosts go on.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from fluxops.errors import CommandError, FluxopsError, HostKeyError
from fluxops.files import atomic_write
from fluxops.masking import MASK, Secret, mask
from fluxops.runner import batch, follow, templating, validate, variables
from fluxops.runner.module import ArgumentError, Change, Context, Fact, Module, Outcome, Step
from fluxops.runner.playbook import Play, Playbook, Task, secret_misuse
from fluxops.runner.results import Report, Status, TaskResult
from fluxops.runner.targets import Target
from fluxops.shell import Result, preload, quote

MAX_PARALLEL = 64
BECOME = ("sudo", "-n", "--")
STDERR_TAIL_LINES = 20
HIDDEN = "(output hidden: no_log)"
_OUTPUT_KEYS = ("stdout", "stderr")
# what RemoteShell says when the host cannot be reached, as opposed to a command that failed on it
_UNREACHABLE = ("cannot connect to", "connection lost", "SSH authentication", "SSH failed", "no answer from")


@dataclass(frozen=True)
class Options:
    """How to run: check mode, diffs, which hosts and tags, the time limit of one command."""

    check: bool = False
    diff: bool = False
    limit: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    timeout: float | None = 600.0


class Reporter(Protocol):
    """Live progress: told when a play starts and as each task (or loop item) finishes on a host."""

    def play_started(self, play: Play, hosts: Sequence[str]) -> None: ...

    def task_done(self, result: TaskResult) -> None: ...


class Silent:
    """A reporter that shows nothing."""

    def play_started(self, play: Play, hosts: Sequence[str]) -> None:
        """Nothing."""

    def task_done(self, result: TaskResult) -> None:
        """Nothing."""


def run(
    playbook: Playbook,
    targets: Sequence[Target],
    options: Options | None = None,
    reporter: Reporter | None = None,
) -> Report:
    """Run every play of ``playbook`` on its hosts among ``targets``; the report of what happened.

    Everything that can be checked without the hosts is checked first (PlaybookError, nothing run).
    """
    options = options or Options()
    reporter = reporter or Silent()
    selections = validate.check(playbook, targets, limit=options.limit, tags=options.tags)
    report = Report(check=options.check)
    states = {t.name: _HostState(t) for t in targets}
    groups = variables.groups_of(targets)
    cancelled = threading.Event()
    for selection in selections:
        live = [t for t in selection.targets if not states[t.name].stopped]
        reporter.play_started(selection.play, [t.name for t in live])
        report.hosts(t.name for t in live)
        if not live:
            continue
        registered = {name: state.registered for name, state in states.items()}
        hostvars = variables.hostvars(
            targets, registered, groups, check=options.check, base_dir=playbook.base_dir
        )
        shared = _Shared(playbook, selection, options, reporter, report, groups, hostvars, cancelled)
        preload(t.shell for t in live)
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(live))) as pool:
            futures = [pool.submit(_HostPlay(shared, states[t.name]).run) for t in live]
            try:
                for future in futures:
                    future.result()
            except BaseException:  # Ctrl-C: every host stops after the command it is running
                cancelled.set()
                raise
    return report


@dataclass
class _HostState:
    """What a host keeps from play to play: its registered results, whether it stopped."""

    target: Target
    registered: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False


@dataclass(frozen=True)
class _Shared:
    """What every host thread of one play reads."""

    playbook: Playbook
    selection: validate.Selection
    options: Options
    reporter: Reporter
    report: Report
    groups: Mapping[str, list[str]]
    hostvars: Mapping[str, Any]
    cancelled: threading.Event


_NO_ITEM = object()
_Gathered = dict[tuple[int, int], "Mapping[str, Any] | _Failure"]


@dataclass
class _Unit:
    """A task, or one item of its loop, rendered and ready to plan."""

    task: Task
    item: Any
    skipped: bool = False
    args: Mapping[str, Any] = field(default_factory=dict)
    module: Module | None = None
    ctx: Context | None = None
    facts: tuple[Fact, ...] = ()
    secrets: list[str] = field(default_factory=list)
    become: bool = False


@dataclass(frozen=True)
class _Next:
    """The fact batch that a unit's change may read in its last command's round trip: the units it
    answers (the one that gathers it first), its snippets, the secrets of that first unit."""

    wanted: list[tuple[tuple[int, int], _Unit]]
    snippets: list[batch.Snippet]
    secrets: list[str]


class _Failure(Exception):
    """A task failed on a host: what to report."""

    def __init__(
        self,
        message: str,
        *,
        command: str = "",
        rc: int | None = None,
        stderr: str = "",
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.command = command
        self.rc = rc
        self.stderr = stderr
        self.unreachable = unreachable

    @classmethod
    def from_error(cls, exc: CommandError, argv: Sequence[str] | None = None) -> _Failure:
        """A command that could not run, timed out or lost its host (reported as ``argv`` if given)."""
        text = str(exc)
        if argv is not None:
            text = text.replace(" ".join(exc.argv), " ".join(argv), 1)
        unreachable = isinstance(exc, HostKeyError) or any(s in text for s in _UNREACHABLE)
        command = quote(exc.argv if argv is None else argv)
        return cls(text, command=command, rc=exc.rc, stderr=exc.stderr_tail, unreachable=unreachable)

    @classmethod
    def from_result(cls, what: str, result: Result) -> _Failure:
        """A command that ran and exited non-zero."""
        tail = _tail(result.stderr) or _tail(result.stdout)
        return cls(f"{what} (exit {result.rc})", command=quote(result.argv), rc=result.rc, stderr=tail)


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-STDERR_TAIL_LINES:])


class _HostPlay:
    """One play on one host (runs in its own thread)."""

    def __init__(self, shared: _Shared, state: _HostState) -> None:
        self.shared = shared
        self.state = state
        self.target = state.target
        self.play = shared.selection.play
        self.options = shared.options
        self.notified: set[str] = set()
        self.secrets: set[str] = set()  # every secret value a task of this host was given
        self.templar = templating.Templar({})

    def run(self) -> None:
        """The play's tasks, then the handlers they notified; stops at the first failure."""
        try:
            self.templar = self._play_templar()
        except templating.TemplateError as exc:
            self._fail_host(str(self.play.error(f"vars: {exc}", "vars")))
            return
        try:
            self._run_tasks(list(self.shared.selection.tasks))
            for handler in self.play.handlers:
                if self.state.stopped:
                    break
                if handler.name in self.notified:
                    self._run_tasks([handler])
        except Exception as exc:  # a fault of the runner or a module must not take other hosts down
            self._fail_host(f"internal error: {type(exc).__name__}: {exc}")

    def _play_templar(self) -> templating.Templar:
        facts = variables.host_facts(
            self.target, self.shared.groups, check=self.options.check, base_dir=self.shared.playbook.base_dir
        )
        templar = templating.Templar(variables.base(self.target, facts, self.shared.hostvars))
        self.templar = templar  # so that an error in the play's vars is masked too
        for name, value in self.play.vars.items():
            templar = templar.with_vars({name: templar.render(value)})
        if self.state.registered:
            templar = templar.with_vars(self.state.registered)
        return templar

    def _fail_host(self, message: str) -> None:
        result = TaskResult(
            host=self.target.name,
            play=self.play.name,
            task="(play)",
            status=Status.FAILED,
            error=mask(message, [*self.templar.secrets, *self.secrets]),
            location=f"{self.play.path}:{self.play.line}",
        )
        self._emit(result)
        self.shared.report.count(self.target.name, Status.FAILED)
        self.state.stopped = True

    # --- tasks ---------------------------------------------------------------------------------

    def _run_tasks(self, tasks: list[Task]) -> None:
        prepared: dict[int, list[_Unit] | None] = {}
        gathered: dict[tuple[int, int], Mapping[str, Any] | _Failure] = {}
        names = [validate.task_names(t) for t in tasks]
        for k, task in enumerate(tasks):
            if self.shared.cancelled.is_set():
                self.state.stopped = True
                return
            label = self._label(task)
            statuses: list[Status] = []
            outcomes: list[tuple[Any, Outcome | None]] = []
            try:
                units = prepared.pop(k, None) or self._prepare(task)
                if not units:  # a loop over no items
                    self._emit(self._result(_Unit(task, _NO_ITEM, skipped=True), label, Status.SKIPPED))
                for u, unit in enumerate(units):
                    if unit.skipped:
                        statuses.append(Status.SKIPPED)
                        outcomes.append((unit.item, None))
                        self._emit(self._result(unit, label, Status.SKIPPED))
                        continue
                    if (k, u) not in gathered:
                        self._gather(tasks, names, k, u, units, prepared, gathered)
                    facts = gathered.pop((k, u))
                    if isinstance(facts, _Failure):
                        raise facts
                    after = partial(self._next_batch, tasks, names, k, u, units, prepared)
                    outcome, change, later = self._do(unit, facts, after)
                    status = Status.CHANGED if outcome.changed else Status.OK
                    if outcome.changed and not self.options.check:
                        gathered.clear()  # the host changed: later facts are read again
                        gathered.update(later)  # (those read with its last command already are)
                    statuses.append(status)
                    outcomes.append((unit.item, outcome))
                    self._emit(self._result(unit, label, status, change))
            except _Failure as failure:
                self._failed(task, label, failure)
                return
            overall = _overall(statuses)
            self.shared.report.count(self.target.name, overall)
            if overall is Status.CHANGED:
                self.notified.update(task.notify)
            if task.register:
                self._register(task, outcomes)

    def _label(self, task: Task) -> str:
        try:
            return str(self.templar.render(task.name))
        except templating.TemplateError:
            return task.name

    def _prepare(self, task: Task) -> list[_Unit]:
        """The task rendered for this host: one unit, or one per loop item."""
        try:
            if task.loop is None:
                return [self._unit(task, _NO_ITEM)]
            items = self.templar.render(task.loop)
            if not isinstance(items, list):
                raise _Failure(str(task.error(f"loop must give a list, got {type(items).__name__}")))
            return [self._unit(task, item) for item in items]
        except _Failure:
            raise
        except templating.UndefinedError as exc:
            raise _Failure(str(task.error(f"undefined variable: {exc}"))) from None
        except templating.TemplateError as exc:
            raise _Failure(str(task.error(f"template error: {exc}"))) from None
        except (ArgumentError, FluxopsError) as exc:
            raise _Failure(str(task.error(str(exc)))) from None
        except Exception as exc:  # a module's facts() that raises is that task's failure
            raise _Failure(_module_error(task, exc, self.templar.secrets)) from None

    def _unit(self, task: Task, item: Any) -> _Unit:
        templar = self.templar if item is _NO_ITEM else self.templar.with_vars({variables.LOOP_VAR: item})
        become = self.play.become if task.become is None else task.become
        if not templar.truth(task.when):
            return _Unit(task, item, skipped=True, secrets=templar.secrets, become=become)
        raw = templar.render(dict(task.args))
        cls = task.module_class
        for param in cls.params:
            misuse = secret_misuse(param, raw.get(param.name))
            if misuse:
                raise _Failure(str(task.error(misuse, task.arg_lines.get(param.name))))
        args = cls.validate(raw)
        module = cls()
        ctx = Context(
            host=self.target.name,
            vars=templar.variables,
            render=templar.render_text,
            base_dir=self.shared.playbook.base_dir,
            check=self.options.check,
        )
        secrets = [*templar.secrets, *(s.reveal() for s in templating.secrets_in(args))]
        self.secrets.update(secrets)
        return _Unit(task, item, False, args, module, ctx, tuple(module.facts(args, ctx)), secrets, become)

    # --- facts ---------------------------------------------------------------------------------

    def _wanted(
        self,
        tasks: list[Task],
        names: list[set[str]],
        k: int,
        u: int,
        units: list[_Unit],
        prepared: dict[int, list[_Unit] | None],
        gathered: Mapping[tuple[int, int], Any],
    ) -> list[tuple[tuple[int, int], _Unit]]:
        """Unit (k, u) and every later unit whose facts its batch reads: those that do not wait on a
        pending register, run as the same user, and are not gathered yet."""
        become = units[u].become
        wanted = [
            ((k, i), x) for i, x in enumerate(units) if i >= u and not x.skipped and (k, i) not in gathered
        ]
        pending = {tasks[k].register} - {None}
        for j in range(k + 1, len(tasks)):
            if not names[j] & pending:
                later = self._prepared(tasks, j, prepared) or []
                wanted += [
                    ((j, i), x)
                    for i, x in enumerate(later)
                    if not x.skipped and x.become == become and (j, i) not in gathered
                ]
            if tasks[j].register:
                pending.add(tasks[j].register)
        return wanted

    def _prepared(
        self, tasks: list[Task], j: int, prepared: dict[int, list[_Unit] | None]
    ) -> list[_Unit] | None:
        """Task j's units, prepared ahead of its turn (None: it fails at its turn, with its own message)."""
        if j not in prepared:
            try:
                prepared[j] = self._prepare(tasks[j])
            except _Failure:
                prepared[j] = None
        return prepared[j]

    def _gather(
        self,
        tasks: list[Task],
        names: list[set[str]],
        k: int,
        u: int,
        units: list[_Unit],
        prepared: dict[int, list[_Unit] | None],
        gathered: dict[tuple[int, int], Mapping[str, Any] | _Failure],
    ) -> None:
        """Facts of unit (k, u) and of every later unit that does not wait on a pending register."""
        wanted = self._wanted(tasks, names, k, u, units, prepared, gathered)
        snippets = _snippets(wanted)
        answers = self._batch(snippets, units[u].become, units[u].secrets) if snippets else {}
        for key, unit in wanted:
            gathered[key] = self._parse(key, unit, answers)

    def _next_batch(
        self,
        tasks: list[Task],
        names: list[set[str]],
        k: int,
        u: int,
        units: list[_Unit],
        prepared: dict[int, list[_Unit] | None],
    ) -> _Next | None:
        """The batch the unit after (k, u) gathers once (k, u) changed the host: that of the next unit
        of the task's loop that runs, else of the next task's first (if it needs no register of task k
        and runs as the same user); None when there is no such batch."""
        start = next((i for i in range(u + 1, len(units)) if not units[i].skipped), None)
        j, later = k, units
        if start is None:
            j = k + 1
            if j >= len(tasks) or names[j] & ({tasks[k].register} - {None}):
                return None
            later = self._prepared(tasks, j, prepared) or []
            start = next((i for i, x in enumerate(later) if not x.skipped), None)
            if start is None:
                return None
        if later[start].become != units[u].become:
            return None
        wanted = self._wanted(tasks, names, j, start, later, prepared, {})
        snippets = _snippets(wanted)
        return _Next(wanted, snippets, later[start].secrets) if snippets else None

    def _batch(
        self, snippets: list[batch.Snippet], become: bool, secrets: list[str]
    ) -> dict[str, batch.Answer]:
        marker = batch.new_marker()
        argv = self._command(("sh", "-s"), become)
        try:
            # the answers are compared with wanted state, so they are not masked; errors are
            result = self.target.shell.run(
                argv, stdin=batch.script(snippets, marker), timeout=self.options.timeout, check=False
            )
        except CommandError as exc:
            raise _Failure.from_error(exc) from None
        return _answers(result, snippets, marker, secrets)

    def _parse(
        self, key: tuple[int, int], unit: _Unit, answers: Mapping[str, batch.Answer]
    ) -> Mapping[str, Any] | _Failure:
        values: dict[str, Any] = {}
        for fact in unit.facts:
            answer = answers[_fact_key(key, fact)]
            try:
                values[fact.key] = fact.parse(answer.stdout, answer.rc)
            except Exception as exc:  # a module's parse() that raises is that task's failure
                what = f"{type(exc).__name__}: {exc}"
                message = f"module {unit.task.module}: fact {fact.key} (exit {answer.rc}): {what}"
                return _Failure(mask(str(unit.task.error(message)), unit.secrets))
        return values

    # --- plans and changes ---------------------------------------------------------------------

    def _do(
        self, unit: _Unit, facts: Mapping[str, Any], after: Callable[[], _Next | None]
    ) -> tuple[Outcome, Change | None, _Gathered]:
        """Plan the unit and, unless in check mode, run its change; with the change's last command,
        the facts ``after`` names when it may share that command's round trip."""
        assert unit.module is not None and unit.ctx is not None
        try:
            change = unit.module.plan(unit.args, facts, unit.ctx)
        except Exception as exc:  # a module's plan() that raises is that task's failure
            raise _Failure(_module_error(unit.task, exc, unit.secrets)) from None
        if change is None:
            return Outcome(changed=False, facts=facts), None, {}
        if self.options.check:
            return Outcome(changed=True, facts=facts), change, {}
        last: Result | None = None
        later: _Gathered = {}
        for n, step in enumerate(change.steps):
            if n == len(change.steps) - 1 and not change.fetch and self._may_share(unit, step):
                last, later = self._step_then_facts(unit, step, after())
            else:
                last = self._step(unit, step)
        for remote, local in change.fetch:
            self._fetch(unit, remote, local)
        if last is None:
            return Outcome(changed=True, facts=facts), change, later
        return Outcome(True, last.rc, last.stdout, last.stderr, facts), change, later

    def _may_share(self, unit: _Unit, step: Step) -> bool:
        """Whether ``step`` may run in one script with the next fact batch: no secret in the task."""
        return not unit.secrets and not isinstance(step.stdin, Secret) and follow.can_share(step.argv)

    def _step_then_facts(self, unit: _Unit, step: Step, then: _Next | None) -> tuple[Result, _Gathered]:
        """Run ``step`` and, if it succeeds, read ``then``'s facts in the same round trip (see ``follow``)."""
        if then is None:
            return self._step(unit, step), {}
        marker, separator = batch.new_marker(), batch.new_marker()
        text = follow.script(step.argv, batch.script(then.snippets, marker), separator)
        if text is None or any(s and s in text for s in [*self.secrets, *self.templar.secrets]):
            return self._step(unit, step), {}
        argv = self._command(("sh", "-c", text), unit.become)
        step_argv = self._command(step.argv, unit.become)
        try:
            result = self.target.shell.run(argv, stdin=step.stdin, timeout=self.options.timeout, check=False)
        except CommandError as exc:
            raise _Failure.from_error(exc, step_argv) from None
        parts = follow.split(result.stdout, result.stderr, separator)
        if parts.absent and result.rc == 0:  # nothing ran: the command fails on its own, as it would
            return self._step(unit, step), {}
        rc = 0 if parts.ran_batch else result.rc
        done = Result(result.host, step_argv, rc, parts.stdout, parts.stderr, result.duration)
        if done.rc != 0:
            raise _Failure.from_result(step.description or "command failed", done)
        if not parts.ran_batch:
            return done, {}
        facts_argv = self._command(("sh", "-s"), unit.become)
        read = Result(result.host, facts_argv, result.rc, parts.batch_stdout, parts.batch_stderr, 0.0)
        try:
            answers = _answers(read, then.snippets, marker, then.secrets)
        except _Failure as failure:  # the first unit of the batch fails at its turn, as it would
            return done, {then.wanted[0][0]: failure}
        return done, {key: self._parse(key, later, answers) for key, later in then.wanted}

    def _command(self, argv: Sequence[str], become: bool) -> tuple[str, ...]:
        """``argv`` under ``sudo -n --`` when becoming root as another user (unless the shell does it)."""
        if become and self.target.user != "root" and not self.target.shell_becomes:
            return (*BECOME, *argv)
        return tuple(argv)

    def _step(self, unit: _Unit, step: Step) -> Result:
        argv = self._command(step.argv, unit.become)
        try:
            result = self.target.shell.run(
                argv, stdin=step.stdin, timeout=self.options.timeout, check=False, secrets=unit.secrets
            )
        except CommandError as exc:
            raise _Failure.from_error(exc) from None
        if result.rc != 0:
            raise _Failure.from_result(step.description or "command failed", result)
        return result

    def _fetch(self, unit: _Unit, remote: str, local: str) -> None:
        """Copy ``remote`` from the host to ``local`` on this machine (0600, written atomically)."""
        argv = self._command(("base64", "--", remote), unit.become)
        try:
            result = self.target.shell.run(argv, timeout=self.options.timeout, check=False)
        except CommandError as exc:
            raise _Failure.from_error(exc) from None
        if result.rc != 0:
            raise _Failure.from_result(f"cannot fetch {remote}", result)
        try:
            data = base64.b64decode(result.stdout)
        except binascii.Error as exc:
            raise _Failure(f"cannot fetch {remote}: the host sent no base64 ({exc})") from None
        assert unit.module is not None
        try:
            content, mode = unit.module.fetched(unit.args, data)
        except Exception as exc:  # a module's fetched() that raises is that task's failure
            raise _Failure(_module_error(unit.task, exc, unit.secrets)) from None
        path = Path(local).expanduser()
        if not path.is_absolute():
            path = self.shared.playbook.base_dir / path
        atomic_write(path, content, mode=mode)

    # --- results -------------------------------------------------------------------------------

    def _register(self, task: Task, outcomes: list[tuple[Any, Outcome | None]]) -> None:
        assert task.register is not None
        if task.loop is None:
            outcome = outcomes[0][1]
            value = outcome.as_vars() if outcome else {"changed": False, "skipped": True, "failed": False}
        else:
            results = [
                {**(o.as_vars() if o else {"changed": False, "skipped": True, "failed": False}), "item": item}
                for item, o in outcomes
            ]
            value = {
                "changed": any(r["changed"] for r in results),
                "skipped": bool(results) and all(r.get("skipped") for r in results),
                "failed": False,
                "results": results,
            }
        if task.no_log:
            value = _hidden_outputs(value)
        self.state.registered[task.register] = value
        self.templar = self.templar.with_vars({task.register: value})

    def _result(self, unit: _Unit, label: str, status: Status, change: Change | None = None) -> TaskResult:
        secrets = unit.secrets
        result = TaskResult(
            host=self.target.name,
            play=self.play.name,
            task=mask(label, secrets),
            status=status,
            item=None if unit.item is _NO_ITEM else mask(_show(unit.item), secrets),
            summary=mask(change.summary, secrets) if change else "",
            diff=mask(change.diff, secrets) if change and self.options.diff else "",
            handler=unit.task.handler,
            location=f"{unit.task.path}:{unit.task.line}",
        )
        if unit.task.no_log:
            item = None if result.item is None else MASK
            return replace(result, item=item, summary=HIDDEN if change else "", diff="")
        return result

    def _failed(self, task: Task, label: str, failure: _Failure) -> None:
        secrets = [*self.templar.secrets, *self.secrets]
        if task.no_log:
            failure.command, failure.stderr = HIDDEN, ""
        status = Status.UNREACHABLE if failure.unreachable else Status.FAILED
        self._emit(
            TaskResult(
                host=self.target.name,
                play=self.play.name,
                task=mask(label, secrets),
                status=status,
                error=mask(failure.message, secrets),
                command=mask(failure.command, secrets),
                rc=failure.rc,
                stderr=mask(failure.stderr, secrets),
                handler=task.handler,
                location=f"{task.path}:{task.line}",
            )
        )
        self.shared.report.count(self.target.name, status)
        self.state.stopped = True

    def _emit(self, result: TaskResult) -> None:
        self.shared.report.add(result)
        self.shared.reporter.task_done(result)


def _module_error(task: Task, exc: Exception, secrets: Sequence[str]) -> str:
    """A module's exception as the task's failure: its own message for a FluxopsError (a ModuleError
    says what is missing and what to do), the exception's type too for anything else."""
    what = str(exc) if isinstance(exc, ArgumentError | FluxopsError) else f"{type(exc).__name__}: {exc}"
    return mask(str(task.error(f"module {task.module}: {what}")), secrets)


def _hidden_outputs(value: Mapping[str, Any]) -> dict[str, Any]:
    """A registered result of a ``no_log`` task: its outputs as Secrets (masked wherever they go)."""
    hidden: dict[str, Any] = dict(value)
    for key in _OUTPUT_KEYS:
        if hidden.get(key):
            hidden[key] = Secret(str(hidden[key]))
    if "stdout_lines" in hidden:
        hidden["stdout_lines"] = [Secret(line) for line in hidden["stdout_lines"]]
    if "results" in hidden:
        hidden["results"] = [_hidden_outputs(r) for r in hidden["results"]]
    return hidden


def _snippets(wanted: list[tuple[tuple[int, int], _Unit]]) -> list[batch.Snippet]:
    return [
        batch.Snippet(_fact_key(key, fact), fact.script, fact.isolated, fact.reader, fact.request)
        for key, unit in wanted
        for fact in unit.facts
    ]


def _answers(
    result: Result, snippets: list[batch.Snippet], marker: str, secrets: list[str]
) -> dict[str, batch.Answer]:
    """The answers of a fact batch's run, or the failure of the unit that gathered it."""
    if result.rc != 0:
        failure = _Failure.from_result("reading facts failed", result)
        failure.stderr = mask(failure.stderr, secrets)
        raise failure
    try:
        return batch.parse(result.stdout, snippets, marker)
    except batch.BatchError as exc:
        raise _Failure(f"reading facts failed: {exc}", command=quote(result.argv)) from None


def _fact_key(key: tuple[int, int], fact: Fact) -> str:
    return f"{key[0]}.{key[1]}.{fact.key}"


def _overall(statuses: list[Status]) -> Status:
    if Status.CHANGED in statuses:
        return Status.CHANGED
    if Status.OK in statuses:
        return Status.OK
    return Status.SKIPPED


def _show(item: Any) -> str:
    if isinstance(item, str):
        return item
    return json.dumps(item, default=str, sort_keys=True)
