"""The simulator tests' fixtures: a node on a virtual clock, fed from a throw-away git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from fluxops.sim import conditions as cond
from fluxops.sim.clock import VirtualClock
from fluxops.sim.cluster import SimCluster
from fluxops.sim.results import Event

URL = "ssh://git@git.rehearsal.invalid/fleet.git"  # Flux's CRD admits no file:// URL; the node rewrites it
START = 1_750_000_000.0
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "PATH": "/usr/bin:/bin:/usr/local/bin",
}


def git(folder: Path, *argv: str) -> str:
    """Run git in ``folder``; its stdout."""
    done = subprocess.run(["git", *argv], cwd=folder, env=GIT_ENV, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def write(folder: Path, files: dict[str, str | None]) -> None:
    """Write (or, for None, delete) files under ``folder``."""
    for rel, text in files.items():
        path = folder / rel
        if text is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit(folder: Path, files: dict[str, str | None], message: str = "change") -> str:
    """Change files, commit everything on ``main`` (a new repository the first time); the commit's sha."""
    if not (folder / ".git").exists():
        folder.mkdir(parents=True, exist_ok=True)
        git(folder, "init", "-q", "-b", "main")
    write(folder, files)
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "--allow-empty", "-m", message)
    return git(folder, "rev-parse", "HEAD")


def manifests(*docs: dict[str, Any]) -> str:
    """YAML documents."""
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def node(tmp_path: Path, repo: Path, **settings: Any) -> tuple[SimCluster, VirtualClock]:
    """A fresh node with Flux installed whose source-controller reads ``URL`` from ``repo``."""
    clock = VirtualClock(start=START)
    merged = {"git_rewrites": {URL: f"file://{repo}"}, "git_protocols": "file", **settings}
    sim = SimCluster.create(
        tmp_path / "node", clock=clock, name="n1", settings=merged, cache_dir=tmp_path / "cache"
    )
    sim.install_flux()
    return sim, clock


def git_repository(interval: str = "1m") -> dict[str, Any]:
    """The GitRepository flux-system on ``URL``, branch main."""
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "flux-system", "namespace": "flux-system"},
        "spec": {"interval": interval, "url": URL, "ref": {"branch": "main"}},
    }


def kustomization(name: str, path: str, **spec: Any) -> dict[str, Any]:
    """A Flux Kustomization in flux-system reading ``path`` from the GitRepository flux-system."""
    body = {
        "interval": "10m",
        "path": path,
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
    }
    body.update(spec)
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system"},
        "spec": body,
    }


def settle(sim: SimCluster, clock: VirtualClock, seconds: float = 600.0) -> list[Event]:
    """Run the controllers for ``seconds`` of simulated time; every event (times relative to now)."""
    start = clock.now()
    events: list[Event] = []
    sim.run(stop=lambda state: False, horizon=start + seconds, on_events=events.extend)
    clock.advance(start + seconds)
    for event in events:
        event.time -= start
    return events


def ready(
    sim: SimCluster, name: str, kind: str = "Kustomization", namespace: str = "flux-system"
) -> tuple[str, str, str]:
    """(status, reason, message) of an object's Ready condition."""
    group = {"Kustomization": "kustomize.toolkit.fluxcd.io", "HelmRelease": "helm.toolkit.fluxcd.io"}.get(
        kind, "source.toolkit.fluxcd.io"
    )
    obj = sim.read().get(group, kind, namespace, name)
    assert obj is not None, f"{kind}/{namespace}/{name} does not exist"
    return cond.ready_reason(obj)


def of(events: list[Event], name: str, what: str | None = None) -> list[Event]:
    """The events of one object (of one kind of event)."""
    return [e for e in events if e.name == name and (what is None or e.what == what)]
