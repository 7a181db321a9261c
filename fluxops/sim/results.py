"""What a controller's reconcile returns, and the events a rehearsal's timeline is made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.layout.kustomize import Builder
from fluxops.sim.validation import Validator

# Flux's controller flags the simulator honours (kustomize-controller --requeue-dependency=30s,
# helm-controller --requeue-dependency=5s; the health-check poll of fluxcd/pkg/ssa WaitForSet).
KUSTOMIZE_REQUEUE_DEPENDENCY = 30.0
HELM_REQUEUE_DEPENDENCY = 5.0
HEALTH_POLL = 5.0
SOURCE_RETRY = 10.0


@dataclass
class Event:
    """Something a controller did to an object, at a simulated time (the rehearsal's timeline)."""

    time: float
    kind: str
    namespace: str
    name: str
    what: str  # waiting | started | applied | ready | failed | deleted
    reason: str = ""
    message: str = ""
    stage: str = ""  # where a Kustomization failed: source, dependencies, build, decryption, ...
    tick: int = 0  # the controllers' round: events of one round happened concurrently


@dataclass
class HealthWait:
    """A wait:true Kustomization waiting for the objects it applied to become Ready."""

    objects: list[str]  # store keys
    labels: list[str]  # Kind/namespace/name
    deadline: float
    started: float
    revision: str
    timeout: float


@dataclass
class Result:
    """The outcome of one reconcile, computed against a snapshot and committed under the lock.

    ``stages`` are the batches Flux's staged apply applies (CRDs, Namespaces and ClusterRoles;
    classes; the rest); ``delete`` what it prunes; ``owned`` the labels Flux sets on what it applies.
    """

    status: dict[str, Any] | None = None
    stages: list[list[dict[str, Any]]] = field(default_factory=list)
    delete: list[dict[str, Any]] = field(default_factory=list)
    create: list[dict[str, Any]] = field(default_factory=list)  # objects a controller makes (HelmCharts)
    manager: str = ""
    requeue: float | None = None
    health: HealthWait | None = None
    finalizers: list[str] | None = None
    events: list[Event] = field(default_factory=list)
    delay: float = 0.0  # an injected slow reconcile: commit this long after it started
    stage: str = ""


@dataclass
class Context:
    """What reconcilers use besides the snapshot: builds, schemas, artifacts, the time and the settings."""

    builder: Builder
    validator: Validator
    artifacts: Path
    now: float
    settings: dict[str, Any]
    faults: dict[str, Any]
