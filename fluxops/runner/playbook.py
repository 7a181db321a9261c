"""Playbooks: a list of plays (hosts, vars, become, tasks, handlers), read with the line of every key.

``load(path)`` reads a playbook and checks everything that needs no host: the shape of plays and
tasks, that each task names exactly one known module, its argument names, required arguments and
the types of arguments that are not templated, template syntax, ``notify`` targets. Every problem
is a :class:`~fluxops.errors.PlaybookError` with the file and line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.errors import InventoryError, PlaybookError
from fluxops.inventory import datafile
from fluxops.runner import modules, templating
from fluxops.runner.module import ArgumentError, Module, Param

PLAY_KEYS = ("name", "hosts", "vars", "become", "tasks", "handlers")
TASK_KEYS = ("name", "when", "notify", "tags", "register", "loop", "become", "no_log")
ALWAYS_TAG = "always"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Fail = Callable[[str], PlaybookError]  # makes the error of one place in the file, given the message


@dataclass(frozen=True)
class Task:
    """One task (or handler): a module with its arguments and the keywords around it."""

    name: str
    module: str
    args: Mapping[str, Any]
    path: Path
    line: int
    arg_lines: Mapping[str, int] = field(default_factory=dict)
    lines: Mapping[str, int] = field(default_factory=dict)
    when: tuple[Any, ...] = ()
    notify: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    register: str | None = None
    loop: Any = None
    become: bool | None = None
    no_log: bool = False  # its output is secret: registered as Secrets, never shown
    handler: bool = False

    @property
    def module_class(self) -> type[Module]:
        """The module this task runs."""
        found = modules.get(self.module)
        assert found is not None, self.module  # load() refused unknown modules
        return found

    def error(self, message: str, line: int | None = None) -> PlaybookError:
        """A PlaybookError at this task (or at ``line``)."""
        return PlaybookError(f"task {self.name!r}: {message}", path=str(self.path), line=line or self.line)


@dataclass(frozen=True)
class Play:
    """One play: which hosts, its variables, whether it becomes root, its tasks and handlers."""

    name: str
    hosts: tuple[str, ...]
    path: Path
    line: int
    vars: Mapping[str, Any] = field(default_factory=dict)
    become: bool = False
    tasks: tuple[Task, ...] = ()
    handlers: tuple[Task, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict)

    def error(self, message: str, key: str | None = None) -> PlaybookError:
        """A PlaybookError at this play (or at one of its keys)."""
        line = self.lines.get(key, self.line) if key else self.line
        return PlaybookError(f"play {self.name!r}: {message}", path=str(self.path), line=line)


@dataclass(frozen=True)
class Playbook:
    """A playbook file and its plays."""

    path: Path
    plays: tuple[Play, ...]

    @property
    def base_dir(self) -> Path:
        """The playbook's folder: templates, files and artifacts are found from it."""
        return self.path.parent


def load(path: Path | str) -> Playbook:
    """Read and check the playbook at ``path``; PlaybookError (file:line) for anything wrong."""
    path = Path(path)
    try:
        data = datafile.parse(datafile.read_text(path), path)
    except InventoryError as exc:
        raise PlaybookError(_bare(exc), path=str(path), line=exc.line) from None
    if data is None:
        raise PlaybookError("the playbook is empty; it must be a list of plays", path=str(path), line=1)
    if not isinstance(data, list):
        line = data.line if isinstance(data, datafile.LineMap) else 1
        raise PlaybookError(
            "a playbook is a list of plays (each starting with `- name:` and `hosts:`)",
            path=str(path),
            line=line,
        )
    if not data:
        raise PlaybookError("the playbook has no plays", path=str(path), line=1)
    _refuse_vault(data, path)
    return Playbook(path=path, plays=tuple(_play(item, path, n) for n, item in enumerate(data, 1)))


def _bare(error: InventoryError) -> str:
    """The message of an error from the YAML reader without its ``file:line:`` prefix."""
    text = str(error)
    if error.path is not None:
        where = f"{error.path}:{error.line}: " if error.line is not None else f"{error.path}: "
        text = text.removeprefix(where)
    return text


def _refuse_vault(value: Any, path: Path, line: int | None = None) -> None:
    if isinstance(value, datafile.Vault):
        raise PlaybookError(
            "vault-encrypted values are not supported; mark secrets with !secret instead",
            path=str(path),
            line=value.line or line,
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_vault(item, path, value.line_of(key) if isinstance(value, datafile.LineMap) else line)
    elif isinstance(value, list):
        for item in value:
            _refuse_vault(item, path, line)


def _lines(mapping: Any) -> dict[str, int]:
    return dict(mapping.lines) if isinstance(mapping, datafile.LineMap) else {}


def _line(mapping: Any, key: str | None = None, default: int = 1) -> int:
    if isinstance(mapping, datafile.LineMap):
        found = mapping.line_of(key) if key is not None else mapping.line
        return found or default
    return default


def _play(raw: Any, path: Path, number: int) -> Play:
    if not isinstance(raw, Mapping):
        raise PlaybookError(
            f"play {number} is a {type(raw).__name__}, not a mapping with name, hosts and tasks",
            path=str(path),
            line=1,
        )
    line = _line(raw)
    name = raw.get("name")
    label = str(name) if name is not None else f"#{number}"

    def fail(message: str, key: str | None = None) -> PlaybookError:
        return PlaybookError(f"play {label!r}: {message}", path=str(path), line=_line(raw, key, line))

    unknown = [k for k in raw if k not in PLAY_KEYS]
    if unknown:
        key = str(unknown[0])
        hint = _did_you_mean(key, PLAY_KEYS)
        raise fail(f"unknown play keyword {key!r}{hint} (a play takes: {', '.join(PLAY_KEYS)})", key)
    if name is not None and not isinstance(name, str):
        raise fail("name must be a string", "name")
    hosts = _hosts(raw.get("hosts"), lambda m: fail(m, "hosts"))
    variables = raw.get("vars") or {}
    if not isinstance(variables, Mapping):
        raise fail("vars must be a mapping of names to values", "vars")
    for var in variables:
        if not isinstance(var, str) or not _IDENTIFIER.match(var):
            raise fail(f"variable name {var!r} is not a valid name (letters, digits, _)", "vars")
    become = _flag(raw.get("become", False), lambda m: fail(m, "become"), "become")
    tasks = _task_list(raw.get("tasks"), path, "tasks", lambda m: fail(m, "tasks"), handler=False)
    handlers = _task_list(raw.get("handlers"), path, "handlers", lambda m: fail(m, "handlers"), handler=True)
    play = Play(
        name=str(name) if name is not None else ", ".join(hosts),
        hosts=hosts,
        path=path,
        line=line,
        vars=dict(variables),
        become=become,
        tasks=tasks,
        handlers=handlers,
        lines=_lines(raw),
    )
    _check_handlers(play)
    for var, value in play.vars.items():
        _syntax(value, lambda m, v=var: fail(f"vars.{v}: {m}", "vars"))
    return play


def _hosts(value: Any, fail: Fail) -> tuple[str, ...]:
    if value is None:
        raise fail("hosts is missing: name a cluster, a group, a role (server, agent), a host or all")
    items = value if isinstance(value, list) else [value]
    patterns: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise fail(f"hosts must be a pattern or a list of patterns, got {item!r}")
        patterns.extend(p.strip() for p in re.split(r"[,:]", item) if p.strip())
    if not patterns:
        raise fail("hosts is empty")
    return tuple(patterns)


def _flag(value: Any, fail: Fail, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise fail(f"{key} must be true or false, got {value!r}")


def _task_list(raw: Any, path: Path, key: str, fail: Fail, *, handler: bool) -> tuple[Task, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise fail(f"{key} must be a list of tasks (each starting with `- name:`)")
    return tuple(_task(item, path, fail, handler=handler) for item in raw)


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _task(raw: Any, path: Path, fail: Fail, *, handler: bool) -> Task:
    if not isinstance(raw, Mapping):
        raise fail(f"a task must be a mapping (name, a module and its arguments), got {raw!r}")
    line = _line(raw)
    name = raw.get("name")
    kind = "handler" if handler else "task"

    def error(message: str, key: str | None = None) -> PlaybookError:
        label = f"{kind} {name!r}" if isinstance(name, str) else f"{kind} at line {line}"
        return PlaybookError(f"{label}: {message}", path=str(path), line=_line(raw, key, line))

    if name is not None and not isinstance(name, str):
        raise error("name must be a string", "name")
    candidates = [str(k) for k in raw if k not in TASK_KEYS]
    found = [k for k in candidates if modules.get(k) is not None]
    unknown = [k for k in candidates if modules.get(k) is None]
    if unknown:
        key = unknown[0]
        hint = _did_you_mean(key, [*modules.names(), *TASK_KEYS])
        raise error(
            f"unknown module or keyword {key!r}{hint}; modules: {', '.join(modules.names())}; "
            f"task keywords: {', '.join(TASK_KEYS)}",
            key,
        )
    if not found:
        raise error(f"no module: name one of {', '.join(modules.names())}")
    if len(found) > 1:
        raise error(f"one module per task, got {' and '.join(found)}", found[1])
    module = found[0]
    cls = modules.get(module)
    assert cls is not None
    module_line = _line(raw, module, line)
    args, arg_lines = _module_args(cls, raw[module], module_line, lambda m, k=module: error(m, k))
    if handler and not isinstance(name, str):
        raise error("a handler needs a name (notify refers to it)")
    task = Task(
        name=name if isinstance(name, str) else module,
        module=module,
        args=args,
        path=path,
        line=line,
        arg_lines=arg_lines,
        lines=_lines(raw),
        when=_when(raw.get("when"), lambda m: error(m, "when")),
        notify=_names(raw.get("notify"), lambda m: error(m, "notify"), "notify"),
        tags=frozenset(_names(raw.get("tags"), lambda m: error(m, "tags"), "tags")),
        register=_register(raw.get("register"), lambda m: error(m, "register")),
        loop=_loop(raw.get("loop"), lambda m: error(m, "loop")),
        become=_task_become(raw.get("become"), lambda m: error(m, "become")),
        no_log=_flag(raw.get("no_log", False), lambda m: error(m, "no_log"), "no_log"),
        handler=handler,
    )
    _syntax(task.args, lambda m: error(m, module))
    _syntax(task.loop, lambda m: error(m, "loop"))
    for condition in task.when:
        _condition_syntax(condition, lambda m: error(m, "when"))
    check_arguments(task)
    return task


def _task_become(value: Any, fail: Fail) -> bool | None:
    return None if value is None else _flag(value, fail, "become")


def _module_args(cls: type[Module], raw: Any, line: int, fail: Fail) -> tuple[dict[str, Any], dict[str, int]]:
    if raw is None:
        return {}, {}
    if isinstance(raw, str):
        if cls.free_form is None:
            raise fail(f"module {cls.name} takes a mapping of arguments, not a string")
        return {cls.free_form: raw}, {cls.free_form: line}
    if not isinstance(raw, Mapping):
        raise fail(f"the arguments of module {cls.name} must be a mapping, got {type(raw).__name__}")
    for key in raw:
        if not isinstance(key, str):
            raise fail(f"argument name {key!r} is not a string")
    return dict(raw), _lines(raw)


def _when(value: Any, fail: Fail) -> tuple[Any, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, str | bool):
            raise fail(f"when must be an expression, a boolean or a list of them, got {item!r}")
    return tuple(items)


def _names(value: Any, fail: Fail, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    names: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise fail(f"{key} must be a name or a list of names, got {item!r}")
        names.extend(n.strip() for n in item.split(",") if n.strip()) if key == "tags" else names.append(item)
    return tuple(names)


def _register(value: Any, fail: Fail) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise fail(f"register must be a variable name (letters, digits, _), got {value!r}")
    return value


def _loop(value: Any, fail: Fail) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return value
    if isinstance(value, str) and templating.is_template(value):
        return value
    raise fail(f"loop must be a list or a template that gives a list (e.g. '{{{{ names }}}}'), got {value!r}")


def _syntax(value: Any, fail: Fail) -> None:
    try:
        templating.names_in(value)
    except templating.TemplateError as exc:
        raise fail(f"template error: {exc}") from None


def _condition_syntax(condition: Any, fail: Fail) -> None:
    try:
        templating.names_in_condition(condition)
    except templating.TemplateError as exc:
        raise fail(f"condition {condition!r} does not parse: {exc}") from None


def _check_handlers(play: Play) -> None:
    names: dict[str, Task] = {}
    for handler in play.handlers:
        if handler.name in names:
            raise handler.error(f"a second handler is called {handler.name!r}; handler names must be unique")
        names[handler.name] = handler
    for task in (*play.tasks, *play.handlers):
        for target in task.notify:
            if target not in names:
                known = ", ".join(names) or "none"
                raise task.error(
                    f"notify names {target!r}, which is no handler of this play (handlers: {known})",
                    task.lines.get("notify"),
                )


# --- arguments ---------------------------------------------------------------------------------


def secret_misuse(param: Param, value: Any) -> str | None:
    """Why a secret value may not go to ``param`` (one the module does not treat as secret), or None."""
    if param.secret or not templating.secrets_in(value):
        return None
    return (
        f"{param.name} gets a secret value, but module argument {param.name} is not secret: it could "
        "reach the host's command line or the output; pass secrets through an argument the module "
        "declares secret (such as stdin)"
    )


def check_arguments(task: Task) -> None:
    """Argument names, required arguments and the types of values that are not templated."""
    cls = task.module_class
    params = {p.name: p for p in cls.params}
    for key in task.args:
        if key not in params:
            hint = _did_you_mean(key, params)
            raise task.error(
                f"module {cls.name} has no argument {key!r}{hint} (it takes: {', '.join(params)})",
                task.arg_lines.get(key),
            )
    templated = False
    for param in cls.params:
        value = task.args.get(param.name)
        line = task.arg_lines.get(param.name)
        if value is None:
            if param.required:
                raise task.error(f"module {cls.name} needs argument {param.name} ({param.type_names})")
            continue
        if isinstance(value, str) and templating.is_template(value):
            templated = True  # its type is known only once rendered
            continue
        misuse = secret_misuse(param, value)
        if misuse:
            raise task.error(misuse, line)
        try:
            param.check(value)
        except ArgumentError as exc:
            raise task.error(str(exc), line) from None
        templated = templated or templating.is_template(value)
    if not templated:
        try:
            cls.validate(task.args)
        except ArgumentError as exc:
            raise task.error(str(exc)) from None
