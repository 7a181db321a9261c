"""The contract every module keeps: typed parameters, facts that read state, a plan that changes it.

A module never runs anything itself. It names the *facts* it needs (a POSIX ``sh`` snippet each and
a pure function that parses the snippet's output) and, given those facts, *plans* the change: the
argv lists the runner would run (secret input on stdin only), the unified diff of any file it would
write, or ``None`` when the host is already as wanted ("ok"). The runner gathers the facts of many
tasks in one round trip, shows plans in check mode and runs them otherwise - so every module gets
check mode, diffs and idempotence from the same place (pyinfra's facts/operations split, Ansible's
module contract).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fluxops.masking import Secret
from fluxops.runner.batch import Reader

Args = Mapping[str, Any]
Facts = Mapping[str, Any]


class ArgumentError(ValueError):
    """A task's arguments do not fit its module; the runner adds the playbook file and line."""


@dataclass(frozen=True)
class Param:
    """One argument of a module: its name, type(s), whether it is required, its default.

    ``secret`` arguments are wrapped in :class:`~fluxops.masking.Secret` (shown as ``***``) and may
    only reach a host on stdin.
    """

    name: str
    types: tuple[type, ...] = (str,)
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    secret: bool = False
    help: str = ""

    def check(self, value: Any) -> Any:
        """``value`` converted for the module, or ArgumentError saying what was expected."""
        if isinstance(value, Secret) and self.secret:
            return value
        if bool in self.types and isinstance(value, str) and value.lower() in _BOOLEAN_WORDS:
            value = _BOOLEAN_WORDS[value.lower()]
        if int in self.types and not isinstance(value, bool) and isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) and bool not in self.types:
            raise ArgumentError(f"{self.name}: expected {self.type_names}, got a boolean")
        if not isinstance(value, self.types):
            raise ArgumentError(f"{self.name}: expected {self.type_names}, got {type(value).__name__}")
        if self.choices and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise ArgumentError(f"{self.name}: {value!r} is not one of {allowed}")
        return Secret(str(value)) if self.secret else value

    @property
    def type_names(self) -> str:
        """The accepted types, as a user writes them in YAML."""
        return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types)


_BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", list: "a list", dict: "a mapping"}


@dataclass(frozen=True)
class Context:
    """Where a task runs: the host, its variables, template rendering, the playbook's folder."""

    host: str
    vars: Mapping[str, Any]
    render: Callable[[str], str]  # jinja2 with ``vars`` (StrictUndefined): for template files
    base_dir: Path  # the playbook's folder: ``templates/``, ``files/`` and local artifacts are found from it
    check: bool = False


@dataclass(frozen=True)
class Fact:
    """A read of host state: ``script`` runs under ``sh`` on the host; ``parse(stdout, rc)`` is pure.

    ``isolated`` runs the script in a subshell of its own (an ``exit``, ``cd`` or syntax error stays
    inside it); a module's own fixed script, whose arguments are quoted, may run without one. With a
    ``reader``, the facts of many tasks are read by one command that answers each ``request`` with what
    ``script`` would print (see ``batch``).
    """

    key: str
    script: str
    parse: Callable[[str, int], Any]
    isolated: bool = True
    reader: Reader | None = None
    request: Hashable = None


@dataclass(frozen=True)
class Step:
    """One command a plan would run on the host; ``stdin`` carries content and secrets, never argv."""

    argv: tuple[str, ...]
    stdin: str | bytes | Secret | None = None
    description: str = ""


@dataclass(frozen=True)
class Change:
    """What a task would change: the commands, a unified diff for a file, a one-line summary."""

    steps: tuple[Step, ...]
    summary: str
    diff: str = ""
    fetch: tuple[tuple[str, str], ...] = ()  # (remote path, local path) files to copy back


@dataclass(frozen=True)
class Outcome:
    """What the runner hands back to ``register``: changed or not, and the last command's output."""

    changed: bool
    rc: int = 0
    stdout: str = ""
    stderr: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)

    def as_vars(self) -> dict[str, Any]:
        """The registered variable, as an Ansible user expects it."""
        return {
            "changed": self.changed,
            "rc": self.rc,
            "stdout": self.stdout,
            "stdout_lines": self.stdout.splitlines(),
            "stderr": self.stderr,
            "failed": False,
            **{k: v for k, v in self.facts.items() if k not in {"changed", "rc", "stdout", "stderr"}},
        }


class Module:
    """Base of every module: declare ``name`` and ``params``; implement ``facts`` and ``plan``."""

    name: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    help: ClassVar[str] = ""
    # the argument a task's plain string goes to (``command: uname -a``); None: arguments are a mapping
    free_form: ClassVar[str | None] = None

    @classmethod
    def validate(cls, raw: Args) -> dict[str, Any]:
        """Checked and defaulted arguments; ArgumentError for an unknown, missing or mistyped one."""
        known = {p.name: p for p in cls.params}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ArgumentError(
                f"module {cls.name} has no argument {', '.join(unknown)} (it takes: {', '.join(known)})"
            )
        args: dict[str, Any] = {}
        for param in cls.params:
            if param.name in raw and raw[param.name] is not None:
                args[param.name] = param.check(raw[param.name])
            elif param.required:
                raise ArgumentError(f"module {cls.name} needs argument {param.name} ({param.type_names})")
            else:
                args[param.name] = param.default
        cls.check_args(args)
        return args

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """Checks between arguments (one of two required, ...); raise ArgumentError."""

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """The state this task needs to read from the host (keys unique within the task)."""
        return ()

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """The change that brings the host to the wanted state, or None when it is there already."""
        raise NotImplementedError

    def fetched(self, args: Args, data: bytes) -> tuple[bytes, int]:
        """What the runner writes on the controller for a file of ``Change.fetch``, and its mode."""
        return data, 0o600


def unified_diff(path: str, before: str | None, after: str | None) -> str:
    """A unified diff of a file's content (``None`` = the file does not exist)."""
    old = [] if before is None else before.splitlines(keepends=True)
    new = [] if after is None else after.splitlines(keepends=True)
    lines = difflib.unified_diff(
        old,
        new,
        fromfile="/dev/null" if before is None else f"{path} (before)",
        tofile="/dev/null" if after is None else f"{path} (after)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
