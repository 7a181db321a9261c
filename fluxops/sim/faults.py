"""Faults a test injects into a simulated node, kept in its state so every process sees them.

- ``fail``: a Kustomization's reconcile fails (Ready False, ``ReconciliationFailed``, the given
  message) until the fault is cleared; it is retried at its ``retryInterval`` like any failure;
- ``slow``: a Kustomization's reconcile takes this many simulated seconds (Ready Unknown,
  ``Reconciliation in progress`` meanwhile);
- ``unresponsive``: the node does not answer: its controllers stop, and every kubectl or flux call
  waits out its request timeout (``--request-timeout``, default 30 s simulated) and fails with
  ``Unable to connect to the server: dial tcp 127.0.0.1:6443: i/o timeout``.

``python -m fluxops.sim.faults [--state DIR] fail NS/NAME MESSAGE | slow NS/NAME SECONDS |
unresponsive on|off | clear`` sets them on a host (default: the k3s server's state).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fluxops.sim import host
from fluxops.sim.cluster import SimCluster


def fail(sim: SimCluster, kustomization: str, message: str) -> None:
    """Make ``namespace/name`` fail with ``message``."""
    _set(sim, kustomization, "fail", message)


def slow(sim: SimCluster, kustomization: str, seconds: float) -> None:
    """Make ``namespace/name`` take ``seconds`` of simulated time per reconcile."""
    _set(sim, kustomization, "slow", float(seconds))


def unresponsive(sim: SimCluster, on: bool = True) -> None:
    """Make the node stop answering (or answer again)."""
    with sim.store.transaction() as state:
        state.faults["unresponsive"] = on


def clear(sim: SimCluster) -> None:
    """Remove every fault."""
    sim.set_faults({})


def _set(sim: SimCluster, kustomization: str, what: str, value: object) -> None:
    if "/" not in kustomization:
        raise ValueError(f"name the Kustomization as namespace/name, got {kustomization!r}")
    with sim.store.transaction() as state:
        state.faults.setdefault("kustomizations", {}).setdefault(kustomization, {})[what] = value


def main(argv: list[str]) -> int:
    """The command line above."""
    args = argv[1:]
    state = host.path(host.SERVER_STATE)
    if args[:1] == ["--state"] and len(args) > 1:
        state, args = Path(args[1]), args[2:]
    sim = SimCluster(state)
    if args[:1] == ["fail"] and len(args) == 3:
        fail(sim, args[1], args[2])
    elif args[:1] == ["slow"] and len(args) == 3:
        slow(sim, args[1], float(args[2]))
    elif args[:1] == ["unresponsive"] and args[1:] in (["on"], ["off"]):
        unresponsive(sim, args[1] == "on")
    elif args == ["clear"]:
        clear(sim)
    else:
        print(__doc__.split("``python -m")[1].split("``")[0].join(["usage: python -m", ""]), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
