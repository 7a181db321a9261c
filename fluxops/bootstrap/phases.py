"""Phased reconciliation: the cluster's Flux Kustomizations levelled by their dependsOn graph.

The entry Kustomization is reconciled first (with its source: it fetches the commit and applies the
phase Kustomizations); then the phases it applied, level by level as
:func:`fluxops.layout.apply_order.apply_order` levels them, the Kustomizations of one level in
parallel, each with ``flux reconcile kustomization NAME`` waited for up to its ``spec.timeout`` (Flux's
default: its interval). A phase blocks when it waits (``wait: true`` or ``healthChecks``) or another
phase depends on it: its failure stops the run after its level, with Flux's message and what to try.
A phase nothing waits for (``apps``) is reported when it fails and does not stop anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.bootstrap.node import BootstrapError, Node
from fluxops.layout.apply_order import apply_order
from fluxops.layout.model import Cluster
from fluxops.layout.model import Phase as TreePhase
from fluxops.progname import progname
from fluxops.sim.clock import format_duration, parse_duration

MARGIN = 120.0  # real seconds a reconcile call may take beyond the Kustomization's timeout
DEFAULT_TIMEOUT = 600.0


@dataclass
class PhaseRun:
    """One Kustomization's reconcile in this run."""

    name: str
    namespace: str
    level: int  # 0: the entry
    depends_on: list[str]
    wait: bool
    blocks: bool
    timeout: float
    state: str = "pending"  # pending, reconciling, ready, failed, skipped
    revision: str = ""
    message: str = ""
    started: float | None = None  # time.monotonic()
    finished: float | None = None

    @property
    def seconds(self) -> float | None:
        """How long its reconcile took."""
        return None if self.started is None or self.finished is None else self.finished - self.started


@dataclass
class Outcome:
    """A phased reconcile: every phase and whether a blocking one failed."""

    cluster: str
    phases: list[PhaseRun] = field(default_factory=list)
    stopped_at: str = ""  # the blocking phase that failed
    hint: str = ""

    @property
    def ok(self) -> bool:
        """True when no blocking phase failed."""
        return not self.stopped_at


Observer = Callable[[PhaseRun], None]


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def timeout_of(obj: dict[str, Any]) -> float:
    """A Kustomization's timeout in seconds (Flux: spec.timeout, else spec.interval)."""
    spec = _spec(obj)
    return parse_duration(spec.get("timeout"), parse_duration(spec.get("interval"), DEFAULT_TIMEOUT))


def plan_phases(kustomizations: list[dict[str, Any]], entry: str, cluster: str = "") -> list[PhaseRun]:
    """The entry (level 0) and the phases level by level (1, 2, ...); phases Flux never applies
    (missing dependency, cycle) come last as ``skipped``."""
    tree = [
        TreePhase(str(k["metadata"]["name"]), str(k["metadata"].get("namespace") or ""), k)
        for k in kustomizations
        if k["metadata"]["name"] != entry
    ]
    order = apply_order(Cluster(cluster, Path("."), tree))
    depended = {d for p in tree for d in p.depends_on}
    runs = []
    top = next((k for k in kustomizations if k["metadata"]["name"] == entry), None)
    if top is not None:
        runs.append(
            PhaseRun(entry, str(top["metadata"].get("namespace") or ""), 0, [], True, True, timeout_of(top))
        )
    for number, level in enumerate(order.levels, 1):
        for p in level:
            waits = p.wait or bool(p.spec.get("healthChecks"))
            runs.append(
                PhaseRun(
                    p.name,
                    p.namespace,
                    number,
                    p.depends_on,
                    waits,
                    waits or p.name in depended,
                    timeout_of(p.obj),
                )
            )
    for p in order.stuck:
        run = PhaseRun(
            p.name, p.namespace, len(order.levels) + 1, p.depends_on, p.wait, False, timeout_of(p.obj)
        )
        run.state, run.message = "skipped", order.why.get(p.name, "never applied")
        runs.append(run)
    return runs


def _ready_of(obj: dict[str, Any] | None) -> tuple[str, str, str]:
    """(status, message, revision) of a Kustomization."""
    status = (obj or {}).get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    revision = str(status.get("lastAppliedRevision") or status.get("lastAttemptedRevision") or "")
    return str(ready.get("status", "Unknown")), str(ready.get("message", "")), revision


def reconcile_one(node: Node, run: PhaseRun, with_source: bool, observe: Observer) -> None:
    """``flux reconcile kustomization`` for one phase, waited for up to its timeout; its state after."""
    run.state, run.started = "reconciling", time.monotonic()
    observe(run)
    argv = [
        "reconcile",
        "kustomization",
        run.name,
        "-n",
        run.namespace or "flux-system",
        f"--timeout={format_duration(run.timeout)}",
    ]
    if with_source:
        argv.append("--with-source")
    result = node.flux(*argv, check=False, timeout=run.timeout + MARGIN)
    obj = node.get_json(
        f"kustomizations.{'kustomize.toolkit.fluxcd.io'}",
        run.name,
        "-n",
        run.namespace or "flux-system",
        check=False,
    )
    ready, message, revision = _ready_of(obj)
    run.finished, run.revision = time.monotonic(), revision
    if result.ok and ready == "True":
        run.state, run.message = "ready", message
    else:
        run.state = "failed"
        # flux's own words first: the object may have moved on since (Flux keeps reconciling)
        said = [line[1:].strip() for line in result.stderr.splitlines() if line.startswith("✗")]
        failure = message if ready == "False" else ""
        run.message = (said[-1] if said else failure or result.stderr.strip()) or f"flux exited {result.rc}"
    observe(run)


def what_to_try(cluster: str, run: PhaseRun, key_hint: str = "") -> str:
    """What the operator can do about a failed blocking phase."""
    hint = (
        f"fix what Flux reports, push, then `{progname()} reconcile --cluster {cluster} --phase {run.name}`; "
        f"on the node `flux get kustomizations` and `kubectl describe kustomization {run.name} -n "
        f"{run.namespace or 'flux-system'}` show more"
    )
    if key_hint and ("decrypt" in run.message or "sops" in run.message):
        hint = f"{key_hint}; {hint}"
    return hint


def _run_batch(node: Node, batch: list[PhaseRun], seen: Observer) -> None:
    with ThreadPoolExecutor(max_workers=max(1, len(batch))) as pool:
        list(pool.map(lambda r: reconcile_one(node, r, r.level == 0, seen), batch))


def reconcile(
    node: Node,
    cluster: str,
    entry: str,
    *,
    from_phase: str | None = None,
    observe: Observer | None = None,
    key_hint: str = "",
) -> Outcome:
    """Step 5: the entry with its source, then round by round every phase whose dependencies are all
    done, reconciled in parallel (a round is a level of the dependsOn graph). The graph is read from
    the node again after each round: a phase may apply Kustomizations of its own, which join the
    first round their dependencies allow. With ``from_phase``, that phase and the levels after it."""
    lock = threading.Lock()

    def seen(run: PhaseRun) -> None:
        if observe is not None:
            with lock:
                observe(run)

    runs = plan_phases(node.kustomizations(), entry, cluster)
    entry_run = next((r for r in runs if r.level == 0), None)
    if entry_run is None:
        raise BootstrapError(
            f"{node.name}: no Kustomization {entry}: Flux is not pointed at the repository; run "
            f"`{progname()} bootstrap --cluster {cluster}` first"
        )
    outcome = Outcome(cluster, [entry_run])
    _run_batch(node, [entry_run], seen)
    if entry_run.state == "failed":
        outcome.stopped_at, outcome.hint = entry, what_to_try(cluster, entry_run, key_hint)
        return outcome
    done: set[str] = {entry}
    skipped_before: set[str] = set()
    if from_phase is not None:
        planned = plan_phases(node.kustomizations(), entry, cluster)
        start = next((r for r in planned if r.name == from_phase), None)
        if start is None:
            names = ", ".join(r.name for r in planned)
            raise BootstrapError(f"cluster {cluster} has no phase {from_phase} (its phases: {names})")
        skipped_before = {r.name for r in planned if 0 < r.level <= start.level and r is not start}
        done |= skipped_before
    level = 0
    while True:
        planned = [r for r in plan_phases(node.kustomizations(), entry, cluster) if r.name not in done]
        batch = [r for r in planned if r.state == "pending" and all(d in done for d in r.depends_on)]
        if not batch or outcome.stopped_at:
            break
        level += 1
        for run in batch:
            run.level = level
        _run_batch(node, batch, seen)
        outcome.phases += batch
        done |= {r.name for r in batch}
        failed = [r for r in batch if r.state == "failed" and r.blocks]
        if failed:
            outcome.stopped_at, outcome.hint = failed[0].name, what_to_try(cluster, failed[0], key_hint)
    for run in planned:  # never reconciled: after a blocking failure, or waiting on what never came
        run.level = level + 1
        if outcome.stopped_at:
            run.state, run.message = "skipped", f"not reconciled: {outcome.stopped_at} failed"
        else:
            run.state = "skipped"
        outcome.phases.append(run)
        seen(run)
    return outcome
