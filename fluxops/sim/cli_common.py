"""What the simulator's kubectl, flux and k3s commands share: refusing what they do not simulate, finding
the node, waiting while driving its controllers, and the node that does not answer."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fluxops.sim import host
from fluxops.sim.cluster import SimCluster
from fluxops.sim.store import SimError, State

POLL = 0.02  # real seconds between checks while waiting


class Unsupported(Exception):
    """An argv the simulator does not implement (never a silent success)."""


class CliError(Exception):
    """A failure to print as the real tool prints it, with its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def unsupported(tool: str, argv: list[str], what: str = "") -> Unsupported:
    """The error for an argv this tool's simulation does not implement."""
    detail = f" ({what})" if what else ""
    return Unsupported(f"{tool} {' '.join(argv)}: unsupported by the simulator{detail}")


def run_main(tool: str, argv: list[str], body: Callable[[list[str]], int]) -> int:
    """Record the call, run it, and turn errors into the tool's exit codes."""
    host.record(tool, argv)
    try:
        return body(argv[1:])
    except Unsupported as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        if exc.message:
            print(exc.message, file=sys.stderr)
        return exc.code
    except SimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def open_node(kubeconfig: str | None, default: str = host.KUBECONFIG) -> SimCluster:
    """The node a kubeconfig points at; the error kubectl gives when there is none."""
    config = Path(kubeconfig) if kubeconfig else None
    if config is None:
        env = os.environ.get("KUBECONFIG")
        config = Path(env) if env else host.path(default)
        if not config.is_file() and not env:
            home = Path.home() / ".kube" / "config"
            config = home if home.is_file() else config
    if kubeconfig and not config.is_file():
        raise CliError(f"error: stat {kubeconfig}: no such file or directory")
    state = host.state_of(config)
    sim = SimCluster(state)
    if not sim.store.exists():
        raise CliError(
            "The connection to the server 127.0.0.1:6443 was refused - "
            "did you specify the right host or port?"
        )
    return sim


def check_answers(sim: SimCluster, timeout: float | None = None) -> None:
    """A node with the ``unresponsive`` fault: wait out the request timeout, then fail as kubectl does."""
    if not (sim.read().faults or {}).get("unresponsive"):
        return
    sim.clock.sleep(timeout if timeout is not None else 30.0)
    raise CliError("Unable to connect to the server: dial tcp 127.0.0.1:6443: i/o timeout")


def drive_until(sim: SimCluster, done: Callable[[State], bool], timeout: float) -> State | None:
    """Drive the node's controllers (another process may too) until ``done``; None after ``timeout``
    simulated seconds."""
    deadline = sim.now() + timeout
    while True:
        state = sim.read()
        if done(state):
            return state
        if sim.now() >= deadline:
            return None
        worked = False
        if not (state.faults or {}).get("unresponsive"):
            worked = sim.controllers.tick()[1]
        if not worked:
            time.sleep(POLL)


def human_age(seconds: float) -> str:
    """kubectl's AGE column (apimachinery's HumanDuration)."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"
