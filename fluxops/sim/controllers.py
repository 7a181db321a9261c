"""The Flux controllers of a simulated node: when each object is due, who reconciles it, and the commit.

A :meth:`Controllers.tick` mirrors controller-runtime's work queue:

1. under the state lock, the objects due now are claimed (with the node setting ``workers``, at most
   that many of a kind per round, like a controller's ``--concurrent``): new ones, those whose
   generation changed
   (GenerationChangedPredicate), those whose ``reconcile.fluxcd.io/requestedAt`` changed
   (ReconcileRequestedPredicate), those being deleted, and those whose requeue time has come. A
   claim is a lease in the schedule, so several processes may drive one node: each object is
   reconciled by one of them at a time;
2. outside the lock, the claimed objects are reconciled in parallel against one snapshot of the
   state, as Flux's controllers work concurrently: Kustomizations due at the same moment do not see
   each other's objects (a CRD another phase is applying right now is not there yet);
3. under the lock again, each result is committed: objects applied, pruned, status written, the
   next run scheduled; watches fire (a GitRepository's new revision makes its Kustomizations due, a
   HelmChart turning Ready its HelmRelease); pending health checks are polled every 5 s until their
   deadline.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from fluxops.sim import conditions as cond
from fluxops.sim import helm, kustomization, source
from fluxops.sim.api import Api, meta, name_of
from fluxops.sim.results import HEALTH_POLL, Context, Event, HealthWait, Result
from fluxops.sim.store import State, Store, group_of, key_of
from fluxops.sim.validation import ApiError

Reconciler = Callable[[Context, State, dict[str, Any]], Result]
REGISTRY: dict[tuple[str, str], Reconciler] = {
    (source.GROUP, "GitRepository"): source.reconcile_git,
    (source.GROUP, "HelmRepository"): source.reconcile_helm_repository,
    (source.GROUP, "HelmChart"): source.reconcile_helm_chart,
    (kustomization.GROUP, "Kustomization"): kustomization.reconcile,
    (helm.GROUP, "HelmRelease"): helm.reconcile_release,
}
LEASE_SECONDS = 300.0  # real seconds a claim lasts if its process dies without committing
WORKERS = 4  # threads reconciling at once in one process
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


def _alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leased(entry: dict[str, Any]) -> bool:
    """True while another (live) claim holds the object."""
    lease = entry.get("lease")
    return bool(lease) and lease.get("until", 0) > time.time() and _alive(str(lease.get("owner", "")))


class Controllers:
    """Drives the controllers of one node; ``make_context`` gives reconcilers the builder, schemas, time."""

    def __init__(
        self, store: Store, make_context: Callable[[State, float], Context], now: Callable[[], float]
    ):
        self.store = store
        self.make_context = make_context
        self.now = now
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- one round ------------------------------------------------------------------------------

    def tick(self) -> tuple[list[Event], bool]:
        """Reconcile what is due now; (events, whether anything was done)."""
        now = self.now()
        with self.store.transaction() as state:
            if not state.node.get("flux"):
                return [], False
            claimed = self._claim(state, now)
            view = state.copy() if claimed else None
        results: dict[str, Result] = {}
        if claimed and view is not None:
            ctx = self.make_context(view, now)
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                futures = {key: pool.submit(self._run, ctx, view, key) for key in claimed}
                results = {key: future.result() for key, future in futures.items()}
        events: list[Event] = []
        with self.store.transaction() as state:
            ctx = self.make_context(state, now)
            for key in sorted(results):
                events.extend(self._commit(state, ctx, key, results[key], now))
            polled = self._poll_health(state, ctx, now)
            events.extend(polled)
            Api(state, ctx.validator, now).collect_garbage()
        return events, bool(claimed) or bool(polled)

    def next_due(self) -> float | None:
        """The earliest simulated time anything is due (now when something is triggered); None if nothing."""
        state = self.store.read()
        if not state.node.get("flux"):
            return None
        now = self.now()
        times: list[float] = []
        for key, obj in state.objects.items():
            if _reconciler(obj) is None:
                continue
            entry = state.schedule.get(key) or {}
            if _triggered(obj, entry):
                times.append(now)
            elif entry.get("health"):
                times.append(float(entry.get("next_poll", now)))
            elif entry.get("due") is not None:
                times.append(float(entry["due"]))
        return min(times) if times else None

    # -- steps ----------------------------------------------------------------------------------

    def _claim(self, state: State, now: float) -> list[str]:
        claimed = []
        per_kind: dict[str, int] = {}
        workers = int((state.node.get("settings") or {}).get("workers") or 0) or None
        faults = (state.faults.get("kustomizations") or {}) if isinstance(state.faults, dict) else {}
        for key, obj in sorted(state.objects.items()):
            if _reconciler(obj) is None:
                continue
            entry = state.schedule.setdefault(key, {})
            kind = str(obj.get("kind"))
            if leased(entry) or (workers is not None and per_kind.get(kind, 0) >= workers):
                continue
            triggered = _triggered(obj, entry)
            if not triggered and (entry.get("health") or entry.get("due") is None or entry["due"] > now):
                continue
            md = meta(obj)
            slow = (
                float((faults.get("/".join(name_of(obj))) or {}).get("slow") or 0)
                if obj.get("kind") == "Kustomization"
                else 0
            )
            entry["generation"] = md.get("generation")
            entry["requested"] = (md.get("annotations") or {}).get(REQUESTED_AT)
            entry["deleting"] = bool(md.get("deletionTimestamp"))
            entry.pop("health", None)
            if slow and not entry.get("slow_until"):
                entry["slow_until"] = now + slow  # an injected slow reconcile: its result comes later
                entry["due"] = now + slow
                status = dict(obj.get("status") or {})
                cond.mark(status, cond.READY, "Unknown", cond.PROGRESSING, "Reconciliation in progress", now)
                cond.mark(
                    status, cond.RECONCILING, "True", cond.PROGRESSING, "Reconciliation in progress", now
                )
                obj["status"] = status
                continue
            entry.pop("slow_until", None)
            entry["lease"] = {"owner": self.owner, "until": time.time() + LEASE_SECONDS}
            per_kind[kind] = per_kind.get(kind, 0) + 1
            claimed.append(key)
        return claimed

    def _run(self, ctx: Context, view: State, key: str) -> Result:
        obj = view.objects[key]
        reconciler = _reconciler(obj)
        assert reconciler is not None
        try:
            return reconciler(ctx, view, obj)
        except Exception as exc:  # a simulator bug must not stop the other controllers
            status = dict(obj.get("status") or {})
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            message = f"simulator error while reconciling: {detail}"
            cond.mark(status, cond.READY, "False", cond.RECONCILIATION_FAILED, message, ctx.now)
            namespace, name = name_of(obj)
            event = Event(
                ctx.now, str(obj.get("kind")), namespace, name, "failed", cond.RECONCILIATION_FAILED, message
            )
            return Result(status=status, requeue=60.0, events=[event], stage="simulator")

    def _commit(self, state: State, ctx: Context, key: str, result: Result, now: float) -> list[Event]:
        entry = state.schedule.get(key) or {}
        if (entry.get("lease") or {}).get("owner") != self.owner:
            return []  # our claim expired and another process took over
        entry.pop("lease", None)
        obj = state.objects.get(key)
        if obj is None:
            return []
        api = Api(state, ctx.validator, now)
        events = list(result.events)
        for created in result.create:
            with contextlib.suppress(ApiError):  # a HelmChart the API refuses stays absent: its release waits
                api.apply(created, result.manager)
        try:
            for batch in result.stages:
                for item in batch:
                    api.apply(item, result.manager, schema=False)
        except ApiError as exc:  # the node changed since the snapshot (a namespace went away)
            message = kustomization.dry_run_message(item, exc)
            status = dict(result.status or {})
            cond.mark(status, cond.READY, "False", cond.RECONCILIATION_FAILED, message, now)
            result.status, result.health = status, None
            namespace, name = name_of(obj)
            events = [
                Event(
                    now,
                    str(obj.get("kind")),
                    namespace,
                    name,
                    "failed",
                    cond.RECONCILIATION_FAILED,
                    message,
                    "apply",
                )
            ]
            result.requeue = kustomization.timings(obj.get("spec") or {})[1]
        for stale in result.delete:
            target = kustomization.object_for(state, stale["_inventory"]) if "_inventory" in stale else stale
            if target is not None:
                api.delete(target)
        before = obj.get("status") or {}
        if result.status is not None:
            obj = api.write_status(obj, result.status) or obj
        if result.finalizers is not None:
            api.set_finalizers(obj, result.finalizers)
        if key not in state.objects:
            return events
        entry["due"] = now + result.requeue if result.requeue is not None else None
        if result.health is not None:
            entry["health"] = asdict(result.health)
            entry["next_poll"] = now
        self._watch(state, obj, before, now)
        return events

    def _poll_health(self, state: State, ctx: Context, now: float) -> list[Event]:
        events: list[Event] = []
        for key, entry in list(state.schedule.items()):
            if not entry.get("health") or float(entry.get("next_poll", now)) > now or leased(entry):
                continue
            obj = state.objects.get(key)
            if obj is None:
                continue
            wait = HealthWait(**entry["health"])
            states = [
                kustomization.health_state(state, k, label)
                for k, label in zip(wait.objects, wait.labels, strict=True)
            ]
            waiting = [s for s in states if s]
            status = dict(obj.get("status") or {})
            spec = obj.get("spec") or {}
            interval, retry, _ = kustomization.timings(spec)
            if not waiting:
                result = kustomization.succeed(
                    obj, status, Result(status=status), wait.revision, now, interval
                )
                events.extend(result.events)
                entry["due"] = now + interval
            elif now >= wait.deadline or any(s.endswith("'Failed'") for s in waiting):
                events.append(kustomization.health_failed(obj, status, wait, waiting, now))
                entry["due"] = now + retry
            else:
                entry["next_poll"] = min(now + HEALTH_POLL, wait.deadline)
                continue
            entry.pop("health", None)
            entry.pop("next_poll", None)
            Api(state, ctx.validator, now).write_status(obj, status)
        return events

    def _watch(self, state: State, obj: dict[str, Any], before: dict[str, Any], now: float) -> None:
        """Watches that make other objects due now (source revisions, HelmCharts, HelmRepositories)."""
        after = obj.get("status") or {}
        kind = obj.get("kind")
        namespace, name = name_of(obj)
        changed_ready = cond.is_ready({"status": before, "metadata": {}}) != cond.is_ready(
            {"status": after, "metadata": {}}
        )
        if kind == "GitRepository":
            revision = (after.get("artifact") or {}).get("revision")
            if revision and revision != (before.get("artifact") or {}).get("revision"):
                for ks in state.list(kustomization.GROUP, "Kustomization"):
                    ref = (ks.get("spec") or {}).get("sourceRef") or {}
                    ks_ns, _ = name_of(ks)
                    if (
                        ref.get("kind") == "GitRepository"
                        and ref.get("name") == name
                        and (ref.get("namespace") or ks_ns) == namespace
                    ):
                        done = (
                            cond.is_ready(ks)
                            and (ks.get("status") or {}).get("lastAttemptedRevision") == revision
                        )
                        if not done:
                            _due_now(state, ks, now)
        elif kind == "HelmChart" and (changed_ready or after.get("artifact") != before.get("artifact")):
            labels = meta(obj).get("labels") or {}
            release = state.get(
                helm.GROUP,
                "HelmRelease",
                labels.get("helm.toolkit.fluxcd.io/namespace", ""),
                labels.get("helm.toolkit.fluxcd.io/name", ""),
            )
            if release is not None:
                _due_now(state, release, now)
        elif kind == "HelmRepository" and changed_ready:
            for chart in state.list(source.GROUP, "HelmChart", namespace):
                ref = (chart.get("spec") or {}).get("sourceRef") or {}
                if ref.get("kind") == "HelmRepository" and ref.get("name") == name:
                    _due_now(state, chart, now)


def _due_now(state: State, obj: dict[str, Any], now: float) -> None:
    entry = state.schedule.setdefault(key_of(obj), {})
    if not entry.get("health"):
        entry["due"] = min(float(entry.get("due") or now), now)


def _reconciler(obj: dict[str, Any]) -> Reconciler | None:
    return REGISTRY.get((group_of(str(obj.get("apiVersion", ""))), str(obj.get("kind", ""))))


def _triggered(obj: dict[str, Any], entry: dict[str, Any]) -> bool:
    """New, a new generation, a new reconcile request, or a deletion not yet handled."""
    if not entry or "generation" not in entry:
        return True
    md = meta(obj)
    requested = (md.get("annotations") or {}).get(REQUESTED_AT)
    return (
        md.get("generation") != entry.get("generation")
        or requested != entry.get("requested")
        or (bool(md.get("deletionTimestamp")) and not entry.get("deleting"))
    )
