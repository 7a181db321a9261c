"""bootstrap on the simulator's k3s server, through the local shell: a copy of this repository's tree
with test keys, pushed to a bare remote the node fetches from; the phases are Flux's (dependsOn order,
decryption with real sops, the planted failures worded as Flux words them)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxops.bootstrap import flux, key, phases
from fluxops.bootstrap.node import BootstrapError
from fluxops.bootstrap.run import bootstrap
from fluxops.masking import Secret
from fluxops.secrets import keystore
from fluxops.sim import host
from fluxops.sim.cluster import SimCluster
from tests.unit.bootstrap_testing import SimHost, World, sim_host
from tests.unit.sim_testing import git

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def node_host(world: World, tmp_path: Path) -> Iterator[SimHost]:
    with sim_host(tmp_path / "host", world.remote) as running:
        yield running


def state_of(machine: SimHost) -> dict[str, Any]:
    """Every object of the node without what reconciling rewrites (status, timestamps, requests)."""
    state = SimCluster(machine.prefix / host.SERVER_STATE.lstrip("/")).read()
    out = {}
    for name, obj in state.objects.items():
        meta = dict(obj.get("metadata") or {})
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if "requestedAt" not in k}
        kept = {k: meta.get(k) for k in ("name", "namespace", "labels", "generation")}
        out[name] = {**{k: v for k, v in obj.items() if k not in ("status", "metadata")}, **kept,
                     "annotations": annotations}  # fmt: skip
    return out


class ArgvWatch:
    """Reads every process's argv (/proc/*/cmdline) while bootstrap runs; what it saw."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                with contextlib.suppress(OSError):
                    self.seen.add((proc / "cmdline").read_bytes().decode(errors="replace"))
            self.stop.wait(0.05)

    def __enter__(self) -> ArgvWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_lab_bootstraps_level_by_level_without_the_key_in_any_argv_and_a_second_run_changes_nothing(
    world: World, node_host: SimHost
) -> None:
    target = world.target("lab")
    observed: list[phases.PhaseRun] = []
    key_text = (world.key_dir / "lab.agekey").read_text()
    with ArgvWatch() as watch:
        report = bootstrap(target, node_host.node(), world.key_dir, observe=observed.append)
    assert report.ok, report.outcome
    assert dict(report.steps)["key"] == "secret flux-system/sops-age created"
    assert dict(report.steps)["flux"] == "installed"
    assert report.status is not None and report.status.ok
    assert {r.revision for r in report.status.kustomizations} == {
        f"main@sha1:{git(world.root, 'rev-parse', 'main')}"
    }
    runs = {r.name: r for r in report.outcome.phases}
    assert runs["flux-system"].level == 0 and runs["crds"].level == 1
    assert runs["infrastructure"].level == runs["storage"].level == 2
    assert {r.state for r in runs.values()} == {"ready"}
    for run in runs.values():  # no phase is reconciled before what it depends on is Ready
        for dep in run.depends_on:
            assert (
                runs[dep].finished is not None
                and run.started is not None
                and run.started >= runs[dep].finished
            )
    infra, storage = runs["infrastructure"], runs["storage"]  # one level: in parallel
    assert infra.started < storage.finished and storage.started < infra.finished
    reconciled = [c["argv"] for c in node_host.calls("flux") if "reconcile" in c["argv"]]
    order = [a[a.index("kustomization") + 1] for a in reconciled]
    assert order.index("crds") < min(order.index("infrastructure"), order.index("storage"))
    assert max(order.index("infrastructure"), order.index("storage")) < order.index("infrastructure-config")
    # the key: never in an argv (ours, the node's calls log), never in a file on the node's side
    assert watch.seen and not any(key_text.strip() in argv for argv in watch.seen)
    for tool in ("kubectl", "flux"):
        assert not any(key_text.strip() in " ".join(c["argv"]) for c in node_host.calls(tool))
    for path in node_host.prefix.rglob("*"):
        if path.is_file():
            assert key_text.strip().encode() not in path.read_bytes(), path
    before = state_of(node_host)
    again = bootstrap(target, node_host.node(), world.key_dir)
    assert again.ok and dict(again.steps)["key"] == "secret flux-system/sops-age unchanged"
    assert dict(again.steps)["flux"] == "already installed"
    assert [r for s, r in again.steps if s == "sync"] == [
        "gitrepository.source.toolkit.fluxcd.io/flux-system unchanged",
        "kustomization.kustomize.toolkit.fluxcd.io/flux-system unchanged",
    ]
    assert state_of(node_host) == before


def test_phx_bootstraps_with_every_phase_ready(world: World, node_host: SimHost) -> None:
    report = bootstrap(world.target("phx"), node_host.node(), world.key_dir)
    assert report.ok and report.status is not None and report.status.ok
    names = {r.name for r in report.status.kustomizations}
    assert {"flux-system", "crds", "infrastructure", "storage", "infrastructure-config", "apps"} <= names


def test_check_changes_nothing_and_lists_what_bootstrap_would_do(world: World, node_host: SimHost) -> None:
    before = state_of(node_host)
    report = bootstrap(world.target("lab"), node_host.node(), world.key_dir, check=True)
    assert report.plan is not None and report.outcome is None
    changes = dict(report.plan.changes)
    assert changes["secret/sops-age"] == "create" and changes["flux controllers"] == "install"
    assert changes["kustomization/flux-system"] == "create"
    levels = {p.name: p.level for p in report.plan.phases}
    assert levels["crds"] == 1 and levels["infrastructure"] == levels["storage"] == 2
    assert not next(p for p in report.plan.phases if p.name == "apps").blocks
    assert state_of(node_host) == before


def test_an_unpushed_commit_is_refused_unless_allowed(world: World, node_host: SimHost) -> None:
    (world.root / "k8s/clusters/lab/NOTES").write_text("x\n")
    git(world.root, "add", "-A")
    git(world.root, "commit", "-q", "-m", "not pushed")
    with pytest.raises(BootstrapError, match=r"not on the remote it reads.*--allow-unpushed"):
        bootstrap(world.target("lab"), node_host.node(), world.key_dir, check=True)
    report = bootstrap(world.target("lab"), node_host.node(), world.key_dir, check=True, allow_unpushed=True)
    assert report.plan is not None


def test_a_missing_key_stops_before_the_node_and_names_the_key(world: World, node_host: SimHost) -> None:
    (world.key_dir / "lab.agekey").unlink()
    with pytest.raises(BootstrapError, match=r"no age key for cluster lab at .*lab\.agekey"):
        bootstrap(world.target("lab"), node_host.node(), world.key_dir)
    assert not node_host.calls("flux")  # nothing reached the node


def test_a_rotated_away_key_fails_at_the_first_phase_holding_secrets(
    world: World, node_host: SimHost
) -> None:
    target = world.target("lab")
    assert bootstrap(target, node_host.node(), world.key_dir).ok
    other = keystore.create(world.key_dir.parent / "other.agekey")
    node = node_host.node()
    assert key.put_key(node, Secret(other.path.read_text())) == "updated"
    from fluxops.bootstrap.run import reconcile

    report = reconcile(target, node, key_dir=world.key_dir)
    outcome = report.outcome
    assert outcome is not None
    failed = [r for r in outcome.phases if r.state == "failed"]
    assert failed and all("decryption failed" in r.message for r in failed)
    sops_phases = {r.name for r in failed}
    first_level = min(r.level for r in failed)
    assert first_level == min(r.level for r in outcome.phases if r.name in sops_phases)
    if outcome.stopped_at:
        assert keystore.public_key(world.key_dir / "lab.agekey") in outcome.hint
        assert str(world.key_dir / "lab.agekey") in outcome.hint


def plant_early(root: Path) -> None:
    """A phase ``early`` (wait: true, after crds) applying a custom resource whose CRD only ``apps``
    applies: a phase that is no dependency of ``early`` (it comes after it)."""
    lab = root / "k8s/clusters/lab"
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    names = {"kind": "Widget", "plural": "widgets", "singular": "widget"}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {
            "group": "example.io",
            "names": names,
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": schema}],
        },
    }
    (lab / "apps" / "widget-crd.yaml").write_text(yaml.safe_dump(crd))
    apps = yaml.safe_load((lab / "apps" / "kustomization.yaml").read_text())
    apps["resources"].append("widget-crd.yaml")
    (lab / "apps" / "kustomization.yaml").write_text(yaml.safe_dump(apps, sort_keys=False))
    phase = yaml.safe_load((lab / "apps.yaml").read_text())  # Flux itself must not apply it first
    phase["spec"].setdefault("dependsOn", []).append({"name": "early"})
    (lab / "apps.yaml").write_text(yaml.safe_dump(phase, sort_keys=False))
    (lab / "early").mkdir()
    (lab / "early" / "widget.yaml").write_text(
        "apiVersion: example.io/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: default\n"
    )
    (lab / "early" / "kustomization.yaml").write_text("resources:\n  - widget.yaml\n")
    ks = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
          "metadata": {"name": "early", "namespace": "flux-system"},
          "spec": {"interval": "30m", "timeout": "10m", "path": "./k8s/clusters/lab/early", "prune": True,
                   "wait": True, "dependsOn": [{"name": "crds"}],
                   "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}}  # fmt: skip
    (lab / "early.yaml").write_text(yaml.safe_dump(ks, sort_keys=False))
    index = yaml.safe_load((lab / "kustomization.yaml").read_text())
    index["resources"].append("early.yaml")
    (lab / "kustomization.yaml").write_text(yaml.safe_dump(index, sort_keys=False))


def test_a_custom_resource_before_its_crd_phase_stops_at_its_phase_with_fluxs_message(
    world: World, node_host: SimHost
) -> None:
    plant_early(world.root)
    git(world.root, "add", "-A")
    git(world.root, "commit", "-q", "-m", "early widget")
    world.push()
    target = world.target("lab")
    with pytest.raises(BootstrapError, match=r"layout\.validate"):  # the preflight sees it first
        bootstrap(target, node_host.node(), world.key_dir)
    node = node_host.node()  # what Flux does with it: the steps after the preflight
    key.put_key(node, Secret((world.key_dir / "lab.agekey").read_text()))
    flux.install(node)
    flux.point_at_repository(node, target)
    outcome = phases.reconcile(node, "lab", target.entry)
    assert outcome.stopped_at == "early"
    early = next(r for r in outcome.phases if r.name == "early")
    assert (
        early.state == "failed" and 'no matches for kind "Widget" in version "example.io/v1"' in early.message
    )
    assert "reconcile --cluster lab --phase early" in outcome.hint
    later = [r for r in outcome.phases if r.level > early.level]
    assert later and {r.state for r in later} == {"skipped"}
    assert {r.state for r in outcome.phases if r.level < early.level} == {"ready"}


def test_the_commands_run_as_root_need_no_sudo_and_others_do(tmp_path: Path) -> None:
    from fluxops.bootstrap.node import remote
    from fluxops.shell import local

    assert remote(local(), "root", False).sudo is False
    assert remote(local(), "deploy", True).sudo is True
    assert os.environ.get("FLUXOPS_SIM_PREFIX") is None  # the fixtures never leak the prefix to us


class DroppingShell:
    """The local shell, whose connection drops at the first ``flux reconcile`` of ``phase``."""

    name = "dropping"

    def __init__(self, phase: str) -> None:
        from fluxops.shell import local

        self.inner = local()
        self.phase = phase

    def run(self, argv: Any, **kwargs: Any) -> Any:
        from fluxops.errors import CommandError

        if "reconcile" in argv and self.phase in argv:
            raise CommandError("connection lost", host=self.name, argv=tuple(map(str, argv)))
        return self.inner.run(argv, **kwargs)


def test_a_connection_dropped_mid_bootstrap_converges_on_the_rerun(world: World, node_host: SimHost) -> None:
    from fluxops.errors import CommandError

    target = world.target("lab")
    dropping = node_host.node()
    dropping.shell = DroppingShell("infrastructure-config")
    with pytest.raises(CommandError, match="connection lost"):
        bootstrap(target, dropping, world.key_dir)
    report = bootstrap(target, node_host.node(), world.key_dir)
    assert report.ok and dict(report.steps)["key"] == "secret flux-system/sops-age unchanged"
    assert report.status is not None and report.status.ok
