"""``command``: run a command, unless a marker file exists or a check command says it is done."""

from __future__ import annotations

from collections.abc import Sequence

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param, Step
from fluxops.runner.modules import register
from fluxops.shell import quote


@register
class Command(Module):
    """Ansible's command and shell in one: ``argv`` (a list, no shell) or ``cmd`` (a string, sh -c)."""

    name = "command"
    help = "run a command; with creates/unless it runs only until its work is done"
    free_form = "cmd"
    params = (
        Param("argv", (list,), help="the command as a list (no shell involved)"),
        Param("cmd", (str,), help="the command as one string, run by sh -c"),
        Param("creates", (str,), help="a path; when it exists the command is not run"),
        Param("unless", (str,), help="a sh command; when it exits 0 the command is not run"),
        Param("stdin", (str,), secret=True, help="text for the command's stdin (never on its command line)"),
    )

    @classmethod
    def check_args(cls, args: dict[str, object]) -> None:
        """Exactly one of argv and cmd."""
        if (args["argv"] is None) == (args["cmd"] is None):
            raise ArgumentError("module command needs exactly one of argv (a list) and cmd (a string)")
        if args["argv"] is not None and not all(isinstance(a, str | int) for a in args["argv"]):  # type: ignore[union-attr]
            raise ArgumentError("argv: every item must be a string")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """Whether the marker exists and whether the check command succeeds."""
        found = []
        if args["creates"]:
            exists = f"test -e {quote([args['creates']])}"  # a shell builtin, its path quoted: no subshell
            found.append(Fact("creates", exists, lambda _out, rc: rc == 0, isolated=False))
        if args["unless"]:
            found.append(Fact("unless", str(args["unless"]), lambda _out, rc: rc == 0))
        return found

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """Nothing when the marker exists or the check passes; else the command."""
        if facts.get("creates") or facts.get("unless"):
            return None
        argv = tuple(str(a) for a in args["argv"]) if args["argv"] is not None else ("sh", "-c", args["cmd"])
        return Change(steps=(Step(argv, stdin=args["stdin"]),), summary=f"run {quote(argv)}")
