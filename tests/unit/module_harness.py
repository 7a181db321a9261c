"""Runs a module the way the runner does, on this machine: fact scripts under ``sh -c``, their output
parsed, the plan's steps run with their stdin, fetched files written as ``fetch``'s contract says."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from fluxops.files import atomic_write
from fluxops.runner import modules
from fluxops.runner.module import Change, Context, Module
from fluxops.shell import Result, local


def context(base_dir: Path, variables: Mapping[str, Any] | None = None, *, check: bool = False) -> Context:
    """A task context whose render is jinja2 with StrictUndefined, trailing newlines kept."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    plain = {k: getattr(v, "reveal", lambda v=v: v)() for k, v in (variables or {}).items()}
    return Context(
        host="local",
        vars=dict(variables or {}),
        render=lambda text: env.from_string(text).render(plain),
        base_dir=base_dir,
        check=check,
    )


class Task:
    """One task of module ``name`` with ``raw`` arguments, checked as the runner checks them."""

    def __init__(self, name: str, raw: Mapping[str, Any], ctx: Context) -> None:
        cls = modules.get(name)
        assert cls is not None, f"no module {name}"
        self.module: Module = cls()
        self.args = cls.validate(raw)
        self.ctx = ctx

    def facts(self) -> dict[str, Any]:
        """Every fact of the task, read here with real sh."""
        found = {}
        for fact in self.module.facts(self.args, self.ctx):
            result = local().run(["sh", "-c", fact.script], check=False, timeout=60)
            found[fact.key] = fact.parse(result.stdout, result.rc)
        return found

    def plan(self) -> Change | None:
        """The task's plan against the current state."""
        return self.module.plan(self.args, self.facts(), self.ctx)

    def apply(self) -> Change | None:
        """Plan, then run the plan's steps (failing on the first that fails) and its fetches."""
        change = self.plan()
        if change is not None:
            run_change(self.module, self.args, change)
        return change

    def converge(self) -> Change:
        """The four steps: check (changed), apply (changed), check (ok), apply (ok); the first plan."""
        first = self.plan()
        assert first is not None, "the first check found nothing to change"
        applied = self.apply()
        assert applied is not None and applied.summary == first.summary
        again = self.plan()
        assert again is None, f"still to change after apply: {again}"
        assert self.apply() is None
        return first


def run_step(argv: tuple[str, ...], stdin: Any = None, *, check: bool = True) -> Result:
    """One step of a plan, run here."""
    return local().run(argv, stdin=stdin, check=check, timeout=60)


def run_change(module: Module, args: Mapping[str, Any], change: Change) -> None:
    """A change's steps, then its fetches as the runner does them (see ``fluxops.runner.modules.fetch``)."""
    for step in change.steps:
        run_step(step.argv, step.stdin)
    for remote, dest in change.fetch:
        raw = base64.b64decode(run_step(("base64", remote)).stdout)
        fetched = getattr(module, "fetched", None)
        content, mode = fetched(args, raw) if fetched is not None else (raw, 0o600)
        atomic_write(Path(dest), content, mode=mode)
