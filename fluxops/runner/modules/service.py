"""``service``: a systemd unit started, stopped, restarted or reloaded, enabled at boot or not."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param, Step
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.shell import quote

_UNIT = re.compile(r"[A-Za-z0-9:_.@\\-]+")
RUNNING = {"active", "activating", "reloading", "refreshing"}
# `systemctl is-enabled` answers that exit 0: the unit starts at boot or with what pulls it in
ENABLED = {"enabled", "enabled-runtime", "static", "indirect", "generated", "transient", "alias"}
WITHOUT_SYSTEMD = {
    "no-systemctl": "the host has no systemctl",
    "not-booted": "systemd is not running on the host (no /run/systemd/system; PID 1 is something else)",
}


@dataclass(frozen=True)
class UnitState:
    """A unit as systemd sees it. ``systemd`` is "yes", "no-systemctl" or "not-booted"."""

    systemd: str
    active: str = ""
    enabled: str = ""
    load: str = ""
    need_reload: bool = False


def unit_fact(unit: str) -> Fact:
    """A fact with the unit's active and enabled states, or why systemd cannot be asked."""
    q = quote([unit])
    script = "\n".join(
        (
            "if ! command -v systemctl >/dev/null 2>&1; then echo systemd=no-systemctl",
            "elif [ ! -d /run/systemd/system ]; then echo systemd=not-booted",
            "else",
            "  echo systemd=yes",
            f'  echo "active=$(systemctl is-active {q} 2>/dev/null)"',
            f'  echo "enabled=$(systemctl is-enabled {q} 2>/dev/null)"',
            f"  systemctl show -p LoadState -p NeedDaemonReload {q} 2>/dev/null",
            "fi",
        )
    )
    return Fact("unit", script, parse_unit)


def parse_unit(stdout: str, rc: int) -> UnitState:
    """The :class:`UnitState` a :func:`unit_fact` snippet printed."""
    fields = dict(line.partition("=")[::2] for line in stdout.splitlines() if "=" in line)
    return UnitState(
        systemd=fields.get("systemd", "no-systemctl"),
        active=fields.get("active", "").strip(),
        enabled=fields.get("enabled", "").strip(),
        load=fields.get("LoadState", ""),
        need_reload=fields.get("NeedDaemonReload") == "yes",
    )


@register
class Service(Module):
    """A systemd unit: ``state`` started/stopped (as needed), restarted/reloaded (every run, as Ansible
    does), ``enabled`` at boot or not, ``daemon_reload`` when systemd says the unit's files changed."""

    name = "service"
    help = "a systemd unit started, stopped, restarted or reloaded; enabled at boot or not"
    params = (
        Param("name", (str,), required=True, help="the unit, e.g. k3s or k3s.service"),
        Param("state", (str,), choices=("started", "stopped", "restarted", "reloaded")),
        Param("enabled", (bool,), help="start at boot (true) or not (false)"),
        Param(
            "daemon_reload", (bool,), default=False, help="systemctl daemon-reload when unit files changed"
        ),
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """A unit name, and something to do."""
        if not _UNIT.fullmatch(args["name"]) or args["name"].startswith("-"):
            raise ArgumentError(f"name: {args['name']!r} is not a systemd unit name")
        if args["state"] is None and args["enabled"] is None and not args["daemon_reload"]:
            raise ArgumentError("module service needs state, enabled or daemon_reload")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """The unit's state."""
        return (unit_fact(args["name"]),)

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """systemctl daemon-reload / enable / disable / start / stop / restart / reload as needed."""
        unit: str = args["name"]
        state: UnitState = facts["unit"]
        if state.systemd != "yes":
            raise ModuleError(
                f"service {unit}: {WITHOUT_SYSTEMD.get(state.systemd, state.systemd)}; "
                "this module manages systemd units only"
            )
        missing = state.load == "not-found"
        if missing and not ctx.check:
            raise ModuleError(f"service {unit}: systemd has no unit {unit} (is it installed?)")
        steps: list[Step] = []
        if args["daemon_reload"] and (state.need_reload or missing):
            steps.append(Step(("systemctl", "daemon-reload")))
        enabled = args["enabled"]
        if enabled is True and (missing or state.enabled not in ENABLED):
            steps.append(Step(("systemctl", "enable", unit)))
        elif enabled is False and state.enabled in {"enabled", "enabled-runtime"}:
            steps.append(Step(("systemctl", "disable", unit)))
        running = state.active in RUNNING
        wanted = args["state"]
        if wanted == "started" and not running:
            steps.append(Step(("systemctl", "start", unit)))
        elif wanted == "stopped" and running:
            steps.append(Step(("systemctl", "stop", unit)))
        elif wanted == "restarted":
            steps.append(Step(("systemctl", "restart", unit)))
        elif wanted == "reloaded":
            steps.append(Step(("systemctl", "reload" if running else "start", unit)))
        if not steps:
            return None
        summary = "; ".join(" ".join(step.argv[1:]) for step in steps)
        if missing:
            summary += f" (no unit {unit} on the host yet)"
        return Change(tuple(steps), summary)
