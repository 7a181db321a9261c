"""``wait_for``: wait on the host until a command succeeds or a TCP port accepts connections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param, Step
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.shell import quote

CHECK_TIMEOUT = 10  # seconds one check may take while facts are gathered
PORT_TIMEOUT = 2  # seconds one connection attempt may take
# bash's /dev/tcp opens a TCP connection without nc or python on the host
PORT_CHECK = 'exec 3<>"/dev/tcp/$1/$2"'
# $1 delay, $2 sleep, then the check's argv: tried until it exits 0 (the whole loop runs under timeout)
LOOP = 'sleep "$1"; s=$2; shift 2; until "$@" </dev/null >/dev/null 2>&1; do sleep "$s"; done'
# $1 what is awaited, $2 the timeout, then timeout's command: says what timed out
OUTER = (
    'what=$1; shift; timeout "$@"; rc=$?; if [ "$rc" = 124 ]; then '
    'echo "wait_for: timed out after $1 s waiting for $what" >&2; fi; exit "$rc"'
)


@dataclass(frozen=True)
class Readiness:
    """Whether the awaited condition holds now, and whether the host has what the wait needs."""

    ready: bool
    bash: bool
    timeout: bool


def check_argv(args: Args) -> tuple[str, ...]:
    """One check, as an argv the host runs: the command under sh, or one connection to the port."""
    if args["command"] is not None:
        return ("sh", "-c", args["command"])
    return ("timeout", str(PORT_TIMEOUT), "bash", "-c", PORT_CHECK, "bash", args["host"], str(args["port"]))


def readiness_fact(args: Args) -> Fact:
    """A fact running the check once (bounded by a timeout) and looking for bash and timeout."""
    check = quote(["timeout", str(CHECK_TIMEOUT), *check_argv(args)])
    script = "\n".join(
        (
            f"if ({check}) </dev/null >/dev/null 2>&1; then echo ready=yes; fi",
            "if command -v bash >/dev/null 2>&1; then echo bash=yes; fi",
            "if command -v timeout >/dev/null 2>&1; then echo timeout=yes; fi",
        )
    )
    return Fact("ready", script, parse_readiness)


def parse_readiness(stdout: str, rc: int) -> Readiness:
    """The :class:`Readiness` a :func:`readiness_fact` snippet printed."""
    found = set(stdout.split())
    return Readiness(ready="ready=yes" in found, bash="bash=yes" in found, timeout="timeout=yes" in found)


def awaited(args: Args) -> str:
    """What the task waits for, in words."""
    if args["command"] is not None:
        return f"command {args['command']!r} to succeed"
    return f"port {args['host']}:{args['port']}"


@register
class WaitFor(Module):
    """Ok when the command already exits 0 (or the port already accepts a connection) on the host; else
    one step that waits ``delay`` seconds and tries every ``sleep`` seconds, stopped by ``timeout`` after
    ``timeout`` seconds with an error naming what it waited for. The command is also run once while
    facts are read (check mode too), so it must only look, as a ``command``'s ``unless`` does. Keep
    ``timeout`` below the runner's limit for one command."""

    name = "wait_for"
    help = "wait until a command succeeds or a port accepts connections, on the host"
    params = (
        Param("command", (str,), help="a sh command; waited for until it exits 0"),
        Param("port", (int,), help="a TCP port; waited for until it accepts a connection"),
        Param("host", (str,), default="127.0.0.1", help="the address the port is tried at, from the host"),
        Param("timeout", (int,), default=300, help="seconds before giving up"),
        Param("delay", (int,), default=0, help="seconds to wait before the first try"),
        Param("sleep", (int,), default=1, help="seconds between tries"),
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """Exactly one of command and port; a port number; positive times."""
        if (args["command"] is None) == (args["port"] is None):
            raise ArgumentError("module wait_for needs exactly one of command and port")
        if args["port"] is not None and not 0 < args["port"] < 65536:
            raise ArgumentError(f"port: {args['port']} is not a TCP port (1-65535)")
        if not args["host"] or any(c in args["host"] for c in "/ \n"):
            raise ArgumentError(f"host: {args['host']!r} is not a host name or address")
        if args["timeout"] < 1:
            raise ArgumentError("timeout: must be at least 1 second")
        if args["delay"] < 0 or args["sleep"] < 1:
            raise ArgumentError("delay must be 0 or more and sleep at least 1 second")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """One try of the check, now."""
        return (readiness_fact(args),)

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """None when the condition holds; else the waiting loop under ``timeout``."""
        state: Readiness = facts["ready"]
        if state.ready:
            return None
        if not state.timeout:
            raise ModuleError("wait_for: the host has no timeout command (coreutils)")
        if args["port"] is not None and not state.bash:
            raise ModuleError("wait_for: the host has no bash, which tries the port (/dev/tcp)")
        what = awaited(args)
        argv = (
            "sh", "-c", OUTER, "sh", what, str(args["timeout"]),
            "sh", "-c", LOOP, "sh", str(args["delay"]), str(args["sleep"]), *check_argv(args),
        )  # fmt: skip
        return Change(
            (Step(argv, description=f"wait for {what}"),), f"wait up to {args['timeout']} s for {what}"
        )
