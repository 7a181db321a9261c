"""What every task module shares: the task class of the flag vocabulary, settings, paths, exits, JSON.

Task modules import their library code inside the task bodies, so that listing the tasks or running
one loads only what that task needs.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke import Context, Exit, Task
from invoke import task as invoke_task

from fluxops import settings
from fluxops.errors import FluxopsError
from fluxops.progname import progname, set_progname

F = TypeVar("F", bound=Callable[..., Any])

# exit codes of every task (docs/cli.md)
OK, FAILED, USAGE = 0, 1, 2
# the one short flag a long flag may have, the same in every task (kubectl's -n, ansible-playbook's -i);
# every other flag is long only
SHORT_FLAGS = {"cluster": "c", "namespace": "n", "inventory": "i"}
HELP_FLAGS = ("--help", "-h")


def program_name() -> str:
    """The command the user typed: ``fluxops`` under the console script, else ``invoke``."""
    return progname()


def set_program_name(name: str) -> None:
    """Called once by the ``fluxops`` console script, so help and hints name it."""
    set_progname(name)


class FluxopsTask(Task):  # type: ignore[type-arg]
    """An invoke task that speaks the fluxops flag vocabulary.

    Long flags only, except the short flags of ``SHORT_FLAGS`` (the same in every task, and never
    one of the program's core flags); ``--help`` or ``-h`` where a positional argument is expected
    prints the task's help instead of being taken as its value.
    """

    def __init__(self, body: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["auto_shortflags"] = False
        super().__init__(body, **kwargs)

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        if name in SHORT_FLAGS:
            opts["names"] = [*opts["names"], SHORT_FLAGS[name]]
        return opts

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Any]:
        # invoke consumes each help text as it builds the flag; keep them for the next parser
        kept = dict(self.help)
        try:
            return super().get_arguments(ignore_unknown_help)
        finally:
            self.help = kept

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if any(kwargs.get(name) in HELP_FLAGS for name in self.positional):
            print_help(self)
            return None
        refuse_misplaced_collection()
        return super().__call__(*args, **kwargs)


def refuse_misplaced_collection() -> None:
    """Under the ``invoke`` command, a usage error for its ``-c`` after a task that has no ``-c``
    (``fluxops.tasks.core_flags``); ``fluxops`` has no ``--collection`` to take it."""
    if program_name() != "invoke":
        return
    from fluxops.tasks import core_flags, namespace

    if core_flags.under_invoke_cli():
        problem = core_flags.misplaced_collection(sys.argv[1:], namespace())
        if problem:
            raise usage(problem)


def task(*args: Any, **kwargs: Any) -> Any:
    """invoke's ``@task`` (bare or with options) making a ``FluxopsTask``."""
    kwargs.setdefault("klass", FluxopsTask)
    return invoke_task(*args, **kwargs)


def print_help(target: Task) -> None:  # type: ignore[type-arg]
    """The task's help, as ``PROGRAM --help TASK`` prints it."""
    from fluxops.tasks import namespace

    ns = namespace()
    # invoke copies the collection of tasks.py, and with it the Task objects, but not their functions
    name = next(n for n in ns.task_names if ns[n].body is target.body)
    if program_name() == "fluxops":
        from fluxops.cli import build_program

        program = build_program()
    else:
        from invoke import Program

        program = Program(namespace=ns, binary="invoke")
    try:
        program.run([program_name(), "--help", name], exit=False)
    except BrokenPipeError:
        quiet_stdout()


def quiet_stdout() -> None:
    """The reader of stdout went away (``... | head``): drop what is still to come, as other tools do."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def usage(message: str) -> Exit:
    """The exit of a command line that cannot be run as given (exit 2)."""
    return Exit(f"error: {message}", code=USAGE)


def required(value: str | None, flag: str) -> str:
    """The value of a flag the task cannot do without, or a usage error naming it."""
    if not value:
        raise usage(f"--{flag} is required (see `{program_name()} --help TASK`)")
    return value


def number(value: str | float, flag: str, low: float, high: float) -> float:
    """A flag's value as a number in (low, high], or a usage error naming the flag."""
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        raise usage(f"--{flag} must be a number, got {value!r}") from None
    if not low < parsed <= high:
        raise usage(f"--{flag} must be more than {low:g} and at most {high:g}, got {value}")
    return parsed


def from_cwd(path: str | Path) -> Path:
    """A file argument as the user means it: relative to the current directory (``~`` expanded)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def project_root(c: Context) -> Path:
    """The repository root: where the program found it (tasks.py's folder, or fluxops' --path)."""
    prefix = getattr(c.config, "_project_prefix", None)
    return Path(prefix).resolve() if prefix else Path.cwd()


def config(c: Context) -> settings.Settings:
    """Resolved fluxops settings of this invocation."""
    return settings.load(c.config.get("fluxops"), project_root(c))


def relative(root: Path, path: Path) -> str:
    """``path`` as shown to the user: relative to the repository root when inside it (POSIX)."""
    path = Path(path)
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def print_json(data: Any) -> None:
    """One JSON document on stdout (the ``--json`` output of a task)."""
    print(json.dumps(data, indent=2, default=str))


def user_errors(func: F) -> F:
    """Turn a FluxopsError into a one-line ``error: ...`` and exit 1; a closed pipe into a quiet exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FluxopsError as exc:
            raise Exit(f"error: {exc}", code=FAILED) from None
        except BrokenPipeError:
            quiet_stdout()
            raise Exit(code=FAILED) from None

    return wrapper  # type: ignore[return-value]
