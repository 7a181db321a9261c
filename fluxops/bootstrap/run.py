"""The whole bootstrap of one cluster (steps 1-6 of docs/bootstrap.md), and ``reconcile``.

Library entry points: :func:`bootstrap` and :func:`reconcile`, each on a :class:`Target` and a
:class:`Node` (any shell); the tasks add the inventory, SSH and the display.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fluxops.bootstrap import flux, phases
from fluxops.bootstrap.key import put_key
from fluxops.bootstrap.node import Node
from fluxops.bootstrap.plan import Plan, plan
from fluxops.bootstrap.preflight_local import preflight_local
from fluxops.bootstrap.preflight_remote import pinned_flux_version, preflight_remote
from fluxops.bootstrap.status import ClusterStatus, status_of
from fluxops.bootstrap.target import Target
from fluxops.errors import FluxopsError
from fluxops.progname import progname

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Report:
    """What a bootstrap did: each step's result, the phased reconcile, the final status."""

    cluster: str
    steps: list[tuple[str, str]] = field(default_factory=list)
    outcome: phases.Outcome | None = None
    status: ClusterStatus | None = None
    plan: Plan | None = None
    seconds: float = 0.0
    waiting: float = 0.0  # time spent in phase reconciles

    @property
    def ok(self) -> bool:
        """No blocking phase failed."""
        return self.outcome is None or self.outcome.ok


def key_hint(target: Target, key_dir: Path | None) -> str:
    """What to check when a phase fails to decrypt: which key the cluster should hold."""
    from fluxops.secrets import keystore, rules

    try:
        wanted = ", ".join(rules.cluster_recipients(target.root, target.cluster)) or "none"
    except FluxopsError:
        wanted = "unknown (.sops.yaml unreadable)"
    where = keystore.key_path(key_dir, target.cluster) if key_dir is not None else "the key store"
    return (
        f"Flux decrypts with the key in flux-system/sops-age; the cluster's files are encrypted to {wanted}: "
        f"put the matching key ({where}) there with `{progname()} bootstrap --cluster {target.cluster}`"
    )


def bootstrap(
    target: Target,
    node: Node,
    key_dir: Path,
    *,
    check: bool = False,
    allow_unpushed: bool = False,
    say: Say = _quiet,
    observe: phases.Observer | None = None,
) -> Report:
    """Preflight here and on the node, then (unless ``check``) the key, Flux, the phases, the status."""
    began = time.monotonic()
    report = Report(target.cluster)

    def step(name: str, result: str) -> None:
        report.steps.append((name, result))
        say(f"{name}: {result}")

    facts = preflight_local(target, key_dir, allow_unpushed=allow_unpushed)
    pushed = f"commit {facts.commit[:12]} on {target.url} {target.branch}" if facts.pushed else "not checked"
    step("local preflight", f"key {facts.public_key[:16]}..., tree valid, {pushed}")
    remote = preflight_remote(node, target.cluster, pinned_flux_version(target))
    step("remote preflight", f"{node.name}: node {', '.join(remote.nodes)} Ready, flux {remote.flux_version}")
    if check:
        report.plan = plan(node, target, facts)
        report.seconds = time.monotonic() - began
        return report
    step("key", f"secret flux-system/sops-age {put_key(node, facts.identities)}")
    step("flux", "installed" if flux.install(node) else "already installed")
    for line in flux.point_at_repository(node, target):
        step("sync", line)
    waited = time.monotonic()
    report.outcome = phases.reconcile(
        node, target.cluster, target.entry, observe=observe, key_hint=key_hint(target, key_dir)
    )
    report.waiting = time.monotonic() - waited
    report.status = status_of(node, target.cluster, target.entry)
    report.seconds = time.monotonic() - began
    return report


def reconcile(
    target: Target,
    node: Node,
    *,
    from_phase: str | None = None,
    observe: phases.Observer | None = None,
    key_dir: Path | None = None,
) -> Report:
    """Step 5 again (from ``from_phase`` on), then the status."""
    began = time.monotonic()
    report = Report(target.cluster)
    report.outcome = phases.reconcile(
        node,
        target.cluster,
        target.entry,
        from_phase=from_phase,
        observe=observe,
        key_hint=key_hint(target, key_dir),
    )
    report.waiting = time.monotonic() - began
    report.status = status_of(node, target.cluster, target.entry)
    report.seconds = time.monotonic() - began
    return report
