"""Status conditions as Flux's runtime writes them (fluxcd/pkg/runtime/conditions, apis/meta).

A condition's ``lastTransitionTime`` moves only when its status changes; ``Ready`` False with a
``Reconciling`` condition gets the reason ``ProgressingWithRetry`` when a reconcile ends
(``finalizeStatus``); a Ready object loses ``Reconciling`` and records ``observedGeneration``.
"""

from __future__ import annotations

from typing import Any

from fluxops.sim.clock import rfc3339

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
HEALTHY = "Healthy"

# apis/meta reasons
SUCCEEDED = "Succeeded"
PROGRESSING = "Progressing"
PROGRESSING_WITH_RETRY = "ProgressingWithRetry"
DEPENDENCY_NOT_READY = "DependencyNotReady"
ARTIFACT_FAILED = "ArtifactFailed"
BUILD_FAILED = "BuildFailed"
HEALTH_CHECK_FAILED = "HealthCheckFailed"
RECONCILIATION_SUCCEEDED = "ReconciliationSucceeded"
RECONCILIATION_FAILED = "ReconciliationFailed"
PRUNE_FAILED = "PruneFailed"


def get(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The condition of type ``kind``."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def mark(status: dict[str, Any], kind: str, value: str, reason: str, message: str, now: float) -> None:
    """Set a condition (``value`` "True", "False" or "Unknown"), keeping its transition time if unchanged."""
    conditions = status.setdefault("conditions", [])
    current = get(status, kind)
    stamp = rfc3339(now)
    if current is not None and current.get("status") == value:
        stamp = current.get("lastTransitionTime", stamp)
    entry = {"type": kind, "status": value, "reason": reason, "message": message, "lastTransitionTime": stamp}
    if "observedGeneration" in status:
        entry["observedGeneration"] = status["observedGeneration"]
    if current is None:
        conditions.append(entry)
    else:
        conditions[conditions.index(current)] = entry
    order = {READY: 0, RECONCILING: 1, STALLED: 2}
    conditions.sort(key=lambda c: order.get(str(c.get("type")), 3))


def delete(status: dict[str, Any], kind: str) -> None:
    """Remove a condition."""
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != kind]


def is_true(obj: dict[str, Any], kind: str = READY) -> bool:
    """True when the object's condition ``kind`` is True."""
    cond = get(obj.get("status") or {}, kind)
    return cond is not None and cond.get("status") == "True"


def is_ready(obj: dict[str, Any]) -> bool:
    """Ready=True for the object's current generation (what dependsOn and health checks ask)."""
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    return is_true(obj) and (generation is None or observed == generation)


def ready_reason(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(status, reason, message) of the Ready condition (``Unknown`` when there is none)."""
    cond = get(obj.get("status") or {}, READY)
    if cond is None:
        return "Unknown", "", ""
    return str(cond.get("status")), str(cond.get("reason", "")), str(cond.get("message", ""))


def finalize(obj: dict[str, Any], status: dict[str, Any], now: float) -> None:
    """Flux's ``finalizeStatus``: the handled reconcile request, observedGeneration and Reconciling."""
    md = obj.get("metadata") or {}
    requested = (md.get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
    if requested:
        status["lastHandledReconcileAt"] = requested
    if is_true({"status": status}):
        delete(status, RECONCILING)
        if md.get("generation") is not None:
            status["observedGeneration"] = md["generation"]
    else:
        cond = get(status, RECONCILING)
        ready = get(status, READY)
        if cond is not None and ready is not None and ready.get("status") == "False":
            cond["reason"] = PROGRESSING_WITH_RETRY
