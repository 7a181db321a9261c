"""``sysctl``: a kernel setting persisted in ``/etc/sysctl.d`` and applied to the running kernel."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param, Step
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import FileState, content_change, file_fact
from fluxops.runner.modules._lines import ensure_line, last_match
from fluxops.shell import quote

SYSCTL_D = "/etc/sysctl.d"
_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
_FILE = re.compile(r"[A-Za-z0-9_.-]+\.conf")


@dataclass(frozen=True)
class LiveSetting:
    """A sysctl in the running kernel: its value (None when the kernel has no such key), whether it can
    be written (a container's /proc/sys/fs and /proc/sys/vm often cannot), whether ``sysctl`` exists."""

    value: str | None
    writable: bool
    tool: bool


def live_fact(name: str) -> Fact:
    """A fact reading ``name`` from the running kernel (``sysctl -n``, else /proc/sys)."""
    proc = proc_path(name)
    script = "\n".join(
        (
            "if command -v sysctl >/dev/null 2>&1; then echo tool=yes; fi",
            f"if [ -w {quote([proc])} ]; then echo writable=yes; fi",
            f"if v=$(sysctl -n {quote([name])} 2>/dev/null) || v=$(cat {quote([proc])} 2>/dev/null); then",
            "  printf 'value=%s\\n' \"$v\"",
            "fi",
        )
    )
    return Fact("live", script, parse_live)


def parse_live(stdout: str, rc: int) -> LiveSetting:
    """The :class:`LiveSetting` a :func:`live_fact` snippet printed (the value comes last, maybe on
    several lines)."""
    head, found, value = stdout.partition("value=")
    words = set(head.split())
    return LiveSetting(
        value=value.rstrip("\n") if found else None,
        writable="writable=yes" in words,
        tool="tool=yes" in words,
    )


def proc_path(name: str) -> str:
    """Where the kernel shows ``name``: net.ipv4.ip_forward -> /proc/sys/net/ipv4/ip_forward."""
    return "/proc/sys/" + name.replace(".", "/")


def normal_value(value: str) -> str:
    """A value as compared: words separated by one space (sysctl prints tabs between several values)."""
    return " ".join(value.split())


@register
class Sysctl(Module):
    """A kernel setting: ``name = value`` in ``/etc/sysctl.d/<file>`` (read at boot) and, when the running
    value differs, ``sysctl -w``. A setting a container cannot write is ok when it has the wanted value."""

    name = "sysctl"
    help = "a kernel setting persisted in /etc/sysctl.d and applied with sysctl -w"
    params = (
        Param("name", (str,), required=True, help="e.g. net.ipv4.ip_forward"),
        Param("value", (str, int), required=True, help="the wanted value (several values: space-separated)"),
        Param("file", (str,), default="90-fluxops.conf", help="the file in /etc/sysctl.d that persists it"),
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """A dotted name, a one-line value, a .conf file name."""
        if not _NAME.fullmatch(args["name"]):
            raise ArgumentError(f"name: {args['name']!r} is not a sysctl name such as net.ipv4.ip_forward")
        args["value"] = normal_value(str(args["value"]))
        if not args["value"]:
            raise ArgumentError("value: empty")
        if not _FILE.fullmatch(args["file"]):
            raise ArgumentError(f"file: {args['file']!r} is not a file name ending in .conf")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """The running value and the persisting file."""
        return (live_fact(args["name"]), file_fact("file", f"{SYSCTL_D}/{args['file']}"))

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """The file's line written and/or ``sysctl -w``; ModuleError for a read-only setting that differs."""
        name, value = args["name"], args["value"]
        path = f"{SYSCTL_D}/{args['file']}"
        steps: list[Step] = []
        summary: list[str] = []
        diff = ""
        persisted = _persist(path, facts["file"], name, value)
        if persisted is not None:
            steps += persisted.steps
            summary.append(persisted.summary)
            diff = persisted.diff
        live: LiveSetting = facts["live"]
        if live.value is None or normal_value(live.value) != value:
            if not live.tool:
                raise ModuleError(f"sysctl: the host has no sysctl command (install procps) to set {name}")
            if live.value is not None and not live.writable:
                raise ModuleError(
                    f"sysctl: {name} is {normal_value(live.value)!r}, not {value!r}, and {proc_path(name)} "
                    "is read-only here (a container shares the kernel's setting): "
                    "set it on the machine that runs it"
                )
            now = "not in the kernel yet" if live.value is None else f"now {normal_value(live.value)}"
            steps.append(Step(("sysctl", "-w", f"{name}={value}"), description=f"apply {name}"))
            summary.append(f"sysctl -w {name}={value} ({now})")
        if not steps:
            return None
        return Change(tuple(steps), "; ".join(summary), diff=diff)


def _persist(path: str, state: FileState, name: str, value: str) -> Change | None:
    """The change that puts ``name = value`` into the sysctl.d file (folder created when missing)."""
    if state.kind == "file" and state.content is None:
        raise ModuleError(f"{path} is too large to edit ({state.size} bytes)")
    text = state.content.decode(errors="surrogateescape") if state.content is not None else ""
    regexp = rf"^\s*-?{re.escape(name)}\s*="
    found = last_match(text, regexp)
    if found is not None and normal_value(found.split("=", 1)[1]) == value:
        return None
    edited = ensure_line(text, f"{name} = {value}", regexp)
    wanted = edited.encode(errors="surrogateescape")
    return content_change(path, state, wanted, mode=None, owner=None, group=None, parents=True)
