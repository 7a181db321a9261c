"""The rehearsal: a cluster's Flux tree reconciled on a fresh simulated node, in-process, offline.

What happens, as ``flux bootstrap`` and Flux would do it on a real node:

1. the cluster is found as :mod:`fluxops.layout.discovery` finds it: its entry Kustomization
   (bootstrap's ``flux-system``) and the GitRepository it reads;
2. the working tree, uncommitted changes included, becomes a commit in a throw-away repository
   (:mod:`fluxops.sim.snapshot`); the node's source-controller fetches the GitRepository's URL from
   there (the URL stays as the tree writes it: Flux's CRD admits no ``file://`` URL);
3. a fresh node (k3s namespaces and CRDs) gets ``flux install``, the ``sops-age`` Secret with the
   cluster's age key (none with ``no_key``), bootstrap's ``flux-system`` Secret (a placeholder: git
   runs against the local snapshot), the GitRepository and the entry Kustomization;
4. the controllers run on a virtual clock: every interval, retry, dependency requeue (30 s) and
   health-check timeout is honoured without being waited for, until every Kustomization and
   HelmRelease is Ready or nothing has changed for the longest retry-plus-timeout of any phase.

The result lists each phase (Kustomization) with when it started and became Ready, or why not, each
HelmRelease, and the timeline. It fails when a blocking phase is not Ready (:func:`blocking`: the
entry, a phase another blocking phase depends on, a ``wait: true`` phase of the entry, and a phase its
blocking parent waits for); a phase nothing waits for, such as ``apps`` with ``wait: false``, is
reported and does not fail it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.errors import FluxopsError
from fluxops.masking import Secret, reveal
from fluxops.secrets import editor
from fluxops.secrets.sops import KeySource
from fluxops.shell import local
from fluxops.sim import conditions as cond
from fluxops.sim import helm, kustomization, snapshot
from fluxops.sim.api import name_of
from fluxops.sim.clock import VirtualClock, parse_duration
from fluxops.sim.cluster import SimCluster
from fluxops.sim.results import Event
from fluxops.sim.store import State

SOPS_SECRET = "sops-age"  # the Secret bootstrap creates in flux-system (its data key ends in .agekey)
SOPS_KEY_ENTRY = "age.agekey"
HORIZON = 6 * 3600.0  # simulated seconds a rehearsal may last at most
SOURCE_GROUP = "source.toolkit.fluxcd.io"
DEFAULT_URL = "ssh://git@rehearsal.invalid/repository.git"
WORK_PREFIX = "fluxops-rehearse-"  # the snapshot and the node live in <tmp>/fluxops-rehearse-<pid>-...


@dataclass
class Entry:
    """What bootstrap would apply for a cluster: its GitRepository and entry Kustomization."""

    cluster: str
    folder: Path
    git_repository: dict[str, Any]
    kustomization: dict[str, Any]

    @property
    def url(self) -> str:
        """The GitRepository's URL as the tree writes it."""
        return str((self.git_repository.get("spec") or {}).get("url", DEFAULT_URL))

    @property
    def branch(self) -> str:
        """The branch the GitRepository follows (Flux's default: master)."""
        ref = (self.git_repository.get("spec") or {}).get("ref") or {}
        return str(ref.get("branch") or "master")


@dataclass
class Phase:
    """One Kustomization of the rehearsal and how it went."""

    name: str
    namespace: str
    wait: bool
    depends_on: list[str]
    ready: bool = False
    reason: str = ""
    message: str = ""
    stage: str = ""
    started: float | None = None
    ready_at: float | None = None
    attempts: int = 0
    tick: int | None = None  # the controllers' round it first started in
    parent: str = ""  # the Kustomization that applied it (empty for the entry)
    health_checks: list[str] = field(default_factory=list)  # Kustomizations named in spec.healthChecks
    blocks: bool = False  # its failure holds back what the cluster needs (see ``blocking``)


@dataclass
class Release:
    """A HelmRelease at the end of the rehearsal."""

    name: str
    namespace: str
    ready: bool
    reason: str
    message: str


@dataclass
class Rehearsal:
    """The outcome: phases, releases, the timeline (times are simulated seconds from the start)."""

    cluster: str
    root: Path
    snapshot: snapshot.Snapshot
    key: str
    phases: list[Phase] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    seconds: float = 0.0  # real time it took
    url: str = ""  # the GitRepository's URL as the tree writes it
    kubernetes: str = ""
    flux: str = ""

    @property
    def failed_blocking(self) -> list[Phase]:
        """Blocking phases that did not become Ready: these fail the rehearsal."""
        return [p for p in self.phases if not p.ready and p.blocks]

    @property
    def entry_name(self) -> str:
        """The entry Kustomization's name."""
        return self.phases[0].name if self.phases else ""

    @property
    def ok(self) -> bool:
        """True when every blocking phase is Ready."""
        return not self.failed_blocking and bool(self.phases)


def identities_of(source: KeySource) -> Secret:
    """The age identities a key source holds (a key file's text, ``$SOPS_AGE_KEY``, or what
    ``$SOPS_AGE_KEY_CMD`` prints), to become the simulated node's ``sops-age`` Secret."""
    env = source.env
    if "SOPS_AGE_KEY_FILE" in env:
        path = Path(str(env["SOPS_AGE_KEY_FILE"])).expanduser()
        try:
            return Secret(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise FluxopsError(f"cannot read the age key {path}: {exc.strerror}") from None
    if "SOPS_AGE_KEY" in env:
        return Secret(reveal(env["SOPS_AGE_KEY"]))
    if "SOPS_AGE_KEY_CMD" in env:
        result = local().run(["sh", "-c", str(env["SOPS_AGE_KEY_CMD"])], check=False, timeout=60)
        if result.rc != 0:
            raise FluxopsError(f"$SOPS_AGE_KEY_CMD failed: {result.stderr.strip()}")
        return Secret(result.stdout)
    raise FluxopsError(f"no age key for cluster {source.cluster} ({source.key_file})")


def find_entry(root: Path, cluster: str) -> Entry:
    """The cluster's entry Kustomization and GitRepository, as layout discovery finds them (synthesised
    as ``flux bootstrap --path=<cluster folder>`` writes them when the tree does not hold them)."""
    from fluxops.layout.discovery import discover
    from fluxops.layout.sources import read_sources
    from fluxops.settings import repository_layout

    root = Path(root).resolve()
    layout = repository_layout(root)
    folders = [(root / f).resolve() for f in layout.folders] or [root]
    sources = read_sources(root, folders)
    found = discover(root, sources, layout)
    names = [c.name for c in found.clusters]
    chosen = next((c for c in found.clusters if c.name == cluster), None)
    if chosen is None:
        raise FluxopsError(f"unknown cluster {cluster!r}: {root} has {', '.join(names) or 'none'}")
    entry = chosen.entry
    rel = chosen.folder.resolve().relative_to(root).as_posix()
    ks = entry.obj or {
        "apiVersion": f"{kustomization.GROUP}/v1",
        "kind": "Kustomization",
        "metadata": {"name": entry.name, "namespace": entry.namespace},
        "spec": {"interval": "10m0s", "path": f"./{rel}" if rel != "." else "./", "prune": True,
                 "sourceRef": {"kind": entry.source[0], "name": entry.source[2]}},
    }  # fmt: skip
    kind, namespace, name = entry.source
    doc = sources.find(kind, name, namespace) if kind == "GitRepository" else None
    repo = doc.data if doc is not None else {
        "apiVersion": f"{SOURCE_GROUP}/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "1m0s", "ref": {"branch": "main"}, "url": DEFAULT_URL,
                 "secretRef": {"name": name}},
    }  # fmt: skip
    return Entry(cluster, chosen.folder, repo, ks)


def _settle_window(state: State) -> float:
    """How long nothing may change before the rehearsal ends: the longest time a phase that is not
    Ready needs for its next attempt (its retryInterval, plus its timeout when health checks are what
    failed or are running), plus the 30 s dependency requeue."""
    longest = 0.0
    for ks in state.list(kustomization.GROUP, "Kustomization"):
        if cond.is_ready(ks):
            continue
        _, retry, timeout = kustomization.timings(ks.get("spec") or {})
        _, reason, _ = cond.ready_reason(ks)
        health = reason in (cond.HEALTH_CHECK_FAILED, cond.PROGRESSING, "")
        longest = max(longest, retry + (timeout if health else 0.0))
    return longest + kustomization.KUSTOMIZE_REQUEUE_DEPENDENCY


def _outcomes(state: State, decided: dict[str, tuple[str, str, str]]) -> tuple[Any, ...]:
    """What the rehearsal watches for change: the object set and each Flux object's last decided Ready
    condition (a reconcile in progress is no change: a phase retrying its health checks goes from
    HealthCheckFailed to Unknown and back)."""
    parts = []
    for key, obj in sorted(state.objects.items()):
        if obj.get("kind") in ("Kustomization", "HelmRelease"):
            outcome = cond.ready_reason(obj)
            if outcome[0] != "Unknown":
                decided[key] = outcome
            parts.append((key, decided.get(key)))
        else:
            parts.append((key,))
    return tuple(parts)


def _all_ready(state: State) -> bool:
    flux = state.list(kustomization.GROUP, "Kustomization") + state.list(helm.GROUP, "HelmRelease")
    return bool(flux) and all(cond.is_ready(o) for o in flux)


def rehearse(
    root: Path,
    cluster: str,
    *,
    identities: Secret | None,
    key_label: str = "",
    cache_dir: Path | None = None,
    on_events: Callable[[list[Event]], None] | None = None,
    on_start: Callable[[Rehearsal], None] | None = None,
    time_factor: float | None = None,
    keep: Path | None = None,
) -> Rehearsal:
    """Rehearse ``cluster`` of the repository at ``root``; ``identities`` None is a node without the key.

    ``on_start`` sees the rehearsal once the node is ready (source, key, versions), ``on_events`` the
    events of each round of the controllers as they happen (times relative to the start); with
    ``time_factor`` the simulated waits are slept, divided by it; ``keep`` keeps the node's state there.
    """
    began = time.monotonic()
    entry = find_entry(root, cluster)
    editor.remove_leftovers(WORK_PREFIX)  # folders of rehearsals whose process was killed
    work = editor.private_folder(WORK_PREFIX)
    try:
        snap = snapshot.take(Path(root), work / "source.git", entry.branch)
        clock = VirtualClock(factor=time_factor)
        node_dir = keep if keep is not None else work / "node"
        settings = {"git_rewrites": {entry.url: snap.url}, "git_protocols": "file"}
        sim = SimCluster.create(
            node_dir,
            name=f"{cluster}-rehearsal",
            clock=clock,
            settings=settings,
            cache_dir=cache_dir,
            durable=keep is not None,
        )
        sim.install_flux()
        if identities is not None:
            sim.put_secret(SOPS_SECRET, "flux-system", {SOPS_KEY_ENTRY: identities})
        secret_ref = ((entry.git_repository.get("spec") or {}).get("secretRef") or {}).get("name")
        if secret_ref:
            namespace = name_of(entry.git_repository)[0] or "flux-system"
            sim.put_secret(secret_ref, namespace, {"identity": "", "identity.pub": "", "known_hosts": ""})
        sim.apply([entry.git_repository, entry.kustomization], "flux", default_namespace="flux-system")
        result = Rehearsal(cluster, Path(root), snap, key_label, start=clock.now(), url=entry.url)
        result.kubernetes = str(sim.read().node.get("kubernetes"))
        result.flux = str((sim.read().node.get("flux") or {}).get("version"))
        if on_start is not None:
            on_start(result)
        watch = _Watch(clock, result, on_events)
        sim.run(stop=watch.stop, horizon=clock.now() + HORIZON, on_events=watch.record)
        state = sim.read()
        result.end = clock.now()
        result.phases = _phases(state, entry, result)
        result.releases = [
            Release(
                o["metadata"]["name"], o["metadata"]["namespace"], cond.is_ready(o), *cond.ready_reason(o)[1:]
            )
            for o in state.list(helm.GROUP, "HelmRelease")
        ]
        result.seconds = time.monotonic() - began
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Watch:
    """Records events (relative times, round numbers) and decides when the rehearsal has settled."""

    def __init__(
        self, clock: VirtualClock, result: Rehearsal, on_events: Callable[[list[Event]], None] | None
    ) -> None:
        self.clock = clock
        self.result = result
        self.on_events = on_events
        self.last: tuple[Any, ...] = ()
        self.decided: dict[str, tuple[str, str, str]] = {}
        self.changed = clock.now()
        self.ticks = 0

    def record(self, events: list[Event]) -> None:
        self.ticks += 1
        for event in events:
            event.time -= self.result.start
            event.tick = self.ticks
            self.result.events.append(event)
        if self.on_events is not None:
            self.on_events(events)

    def stop(self, state: State) -> bool:
        if _all_ready(state):
            return True
        now = self.clock.now()
        outcomes = _outcomes(state, self.decided)
        if outcomes != self.last:
            self.last, self.changed = outcomes, now
            return False
        return now - self.changed >= _settle_window(state)


def _phases(state: State, entry: Entry, result: Rehearsal) -> list[Phase]:
    """Every Kustomization, the entry first, the rest in the order they started (then by name)."""
    phases = []
    for ks in state.list(kustomization.GROUP, "Kustomization"):
        namespace, name = name_of(ks)
        spec = ks.get("spec") or {}
        deps = [str(d.get("name")) for d in spec.get("dependsOn") or [] if isinstance(d, dict)]
        _, reason, message = cond.ready_reason(ks)
        phase = Phase(name, namespace, spec.get("wait") is True, deps, cond.is_ready(ks), reason, message)
        phase.parent = str((ks["metadata"].get("labels") or {}).get(kustomization.NAME_LABEL, ""))
        phase.health_checks = [
            str(h.get("name")) for h in spec.get("healthChecks") or []
            if isinstance(h, dict) and h.get("kind") == "Kustomization"
        ]  # fmt: skip
        mine = [
            e
            for e in result.events
            if e.kind == "Kustomization" and (e.namespace, e.name) == (namespace, name)
        ]
        starts = [e for e in mine if e.what == "started"]
        first_ready = next((e.tick for e in mine if e.what == "ready"), None)
        phase.attempts = len([e for e in starts if first_ready is None or e.tick <= first_ready])
        phase.started = starts[0].time if starts else None
        phase.tick = starts[0].tick if starts else None
        readies = [e for e in mine if e.what == "ready"]
        phase.ready_at = readies[0].time if readies and phase.ready else None
        failures = [e for e in mine if e.what in ("failed", "waiting")]
        if not phase.ready and failures:
            phase.stage = failures[-1].stage
        phases.append(phase)
    entry_key = name_of(entry.kustomization)[1]
    depth = _depths(phases)
    blocking(phases, entry_key)
    never = float("inf")
    phases.sort(key=lambda p: (p.name != entry_key, p.tick or never, depth.get(p.name, 0), p.name))
    return phases


def blocking(phases: list[Phase], entry: str) -> None:
    """Mark the phases whose failure fails the rehearsal.

    A phase blocks when it is the entry; when a blocking phase depends on it; when the entry applied it
    and it has ``wait: true`` (or ``healthChecks``); or when it was applied by a blocking phase that
    waits for it (``wait: true``, or names it in ``healthChecks``).
    """
    by_name = {p.name: p for p in phases}
    dependents: dict[str, list[Phase]] = {}
    for phase in phases:
        for dep in phase.depends_on:
            dependents.setdefault(dep, []).append(phase)
    memo: dict[str, bool] = {}

    def blocks(phase: Phase, seen: frozenset[str]) -> bool:
        if phase.name in memo:
            return memo[phase.name]
        if phase.name in seen:
            return False
        seen = seen | {phase.name}
        parent = by_name.get(phase.parent)
        verdict = (
            phase.name == entry
            or any(blocks(d, seen) for d in dependents.get(phase.name, []))
            or (phase.parent == entry and (phase.wait or bool(phase.health_checks)))
            or (
                parent is not None
                and parent.name != entry
                and (parent.wait or phase.name in parent.health_checks)
                and blocks(parent, seen)
            )
        )
        memo[phase.name] = verdict
        return verdict

    for phase in phases:
        phase.blocks = blocks(phase, frozenset())


def _depths(phases: list[Phase]) -> dict[str, int]:
    """How many dependsOn steps each phase is from one without dependencies (a cycle counts once)."""
    deps = {p.name: p.depends_on for p in phases}
    found: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in found:
            return found[name]
        if name in seen:
            return 0
        value = 1 + max((depth(d, seen | {name}) for d in deps.get(name, []) if d in deps), default=-1)
        found[name] = value
        return value

    for phase in phases:
        depth(phase.name, frozenset())
    return found


def interval_of(ks: dict[str, Any]) -> float:
    """A Kustomization's interval in seconds."""
    return parse_duration((ks.get("spec") or {}).get("interval"), 600.0)
