"""``modprobe``: a kernel module loaded now and at boot (``/etc/modules-load.d/<name>.conf``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param, Step
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import FileState, content_change, file_fact
from fluxops.runner.modules._lines import ensure_line
from fluxops.shell import quote

MODULES_LOAD_D = "/etc/modules-load.d"
_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class KernelModule:
    """A module in the running kernel: loaded or built in (``/sys/module/<name>`` exists), and the path
    of the host's ``modprobe`` ("" when it has none)."""

    present: bool
    modprobe: str


def kernel_fact(name: str) -> Fact:
    """A fact saying whether ``name`` is in the running kernel and where ``modprobe`` is."""
    sys_dir = "/sys/module/" + name.replace("-", "_")  # the kernel names modules with underscores
    script = "\n".join(
        (
            f"if [ -d {quote([sys_dir])} ]; then echo present=yes; fi",
            "for m in $(command -v modprobe) /usr/sbin/modprobe /sbin/modprobe; do",
            '  if [ -x "$m" ]; then echo "modprobe=$m"; break; fi',
            "done",
        )
    )
    return Fact("kernel", script, parse_kernel)


def parse_kernel(stdout: str, rc: int) -> KernelModule:
    """The :class:`KernelModule` a :func:`kernel_fact` snippet printed."""
    fields = dict(line.partition("=")[::2] for line in stdout.splitlines() if "=" in line)
    return KernelModule(present=fields.get("present") == "yes", modprobe=fields.get("modprobe", ""))


@register
class Modprobe(Module):
    """A kernel module listed in ``/etc/modules-load.d/<name>.conf`` (systemd loads it at boot) and loaded
    now with ``modprobe`` unless it is loaded or built into the kernel already."""

    name = "modprobe"
    help = "a kernel module loaded now and at boot (modules-load.d)"
    params = (Param("name", (str,), required=True, help="the kernel module, e.g. br_netfilter"),)

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """A module name (letters, digits, _ and -)."""
        if not _NAME.fullmatch(args["name"]):
            raise ArgumentError(f"name: {args['name']!r} is not a kernel module name")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """Whether the module is in the kernel, where modprobe is, and the modules-load.d file."""
        return (kernel_fact(args["name"]), file_fact("file", conf_path(args["name"])))

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """The boot file written and/or ``modprobe NAME``; ModuleError when it cannot be loaded."""
        name = args["name"]
        steps: list[Step] = []
        summary: list[str] = []
        diff = ""
        path = conf_path(name)
        state: FileState = facts["file"]
        if state.kind == "file" and state.content is None:
            raise ModuleError(f"{path} is too large to edit ({state.size} bytes)")
        text = state.content.decode(errors="surrogateescape") if state.content is not None else ""
        wanted = ensure_line(text, name).encode(errors="surrogateescape")
        persisted = content_change(path, state, wanted, mode=None, owner=None, group=None, parents=True)
        if persisted is not None:
            steps += persisted.steps
            summary.append(persisted.summary)
            diff = persisted.diff
        kernel: KernelModule = facts["kernel"]
        if not kernel.present:
            if not kernel.modprobe:
                raise ModuleError(
                    f"modprobe: kernel module {name} is not loaded and the host has no modprobe command "
                    "(install kmod; in a container, load the module on the machine that runs it)"
                )
            steps.append(Step((kernel.modprobe, name), description=f"load {name}"))
            summary.append(f"load kernel module {name}")
        if not steps:
            return None
        return Change(tuple(steps), "; ".join(summary), diff=diff)


def conf_path(name: str) -> str:
    """The modules-load.d file of module ``name``."""
    return f"{MODULES_LOAD_D}/{name}.conf"
