"""What every task module shares: settings from the context, errors turned into exits."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke import Context, Exit

from fluxops import settings
from fluxops.errors import FluxopsError

F = TypeVar("F", bound=Callable[..., Any])


def project_root(c: Context) -> Path:
    """The folder of tasks.py (invoke's project location), else the working directory."""
    prefix = getattr(c.config, "_project_prefix", None)
    return Path(prefix).resolve() if prefix else Path.cwd()


def config(c: Context) -> settings.Settings:
    """Resolved fluxops settings of this invocation."""
    return settings.load(c.config.get("fluxops"), project_root(c))


def user_errors(func: F) -> F:
    """Turn a FluxopsError into a clean ``Exit`` with its message (exit code 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FluxopsError as exc:
            raise Exit(f"error: {exc}", code=1) from None
        except BrokenPipeError:
            # the reader went away (`invoke ... | head`): stop quietly, as other command-line tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def required(value: str | None, flag: str) -> str:
    """The value of a flag the task cannot do without, or a clean exit naming it."""
    if not value:
        raise Exit(f"error: --{flag} is required (see invoke --help for the task)", code=1)
    return value
