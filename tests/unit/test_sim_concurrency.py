"""Two processes driving one node's controllers at once (as two controller replicas, or two CLI calls
that reconcile while they wait) leave a consistent state: the store's lock and each object's lease."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

from fluxops.sim import conditions as cond
from fluxops.sim.cluster import SimCluster
from tests.unit.sim_testing import URL, commit, git_repository, kustomization, manifests

PHASES = [f"p{i}" for i in range(6)]
DRIVER = """
import json, os, sys, time
from pathlib import Path
from fluxops.sim.cluster import SimCluster
state, log, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
sim = SimCluster(state)
run = sim.controllers._run
def logged(ctx, view, key):
    start = time.time()
    result = run(ctx, view, key)
    with open(log, "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "key": key, "start": start, "end": time.time()}) + "\\n")
    return result
sim.controllers._run = logged
deadline = time.time() + seconds
while time.time() < deadline:
    if not sim.controllers.tick()[1]:
        time.sleep(0.01)
"""


def phase_files(name: str) -> dict[str, str]:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"c{i}", "namespace": name},
            "data": {"i": str(i)},
        }
        for i in range(3)
    ]
    return {f"{name}/all.yaml": manifests(namespace, *maps)}


def test_two_processes_reconciling_at_once_leave_a_consistent_state(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    files: dict[str, str | None] = {}
    for name in PHASES:
        files.update(phase_files(name))
    commit(repo, files)
    settings = {"git_rewrites": {URL: f"file://{repo}"}, "git_protocols": "file", "workers": 1}
    sim = SimCluster.create(tmp_path / "node", name="n1", time_factor=60.0, settings=settings)
    sim.install_flux()
    sim.apply([git_repository("1m"), *(kustomization(n, f"./{n}", retryInterval="30s") for n in PHASES)])
    log = tmp_path / "claims.jsonl"
    argv = [sys.executable, "-c", DRIVER, str(sim.folder), str(log), "4"]
    drivers = [subprocess.Popen(argv) for _ in range(2)]
    assert [d.wait(timeout=60) for d in drivers] == [0, 0]

    claims = [json.loads(line) for line in log.read_text().splitlines()]
    assert len({c["pid"] for c in claims}) == 2  # both processes reconciled
    by_key: dict[str, list[dict]] = {}
    for claim in claims:
        by_key.setdefault(claim["key"], []).append(claim)
    for key, runs in by_key.items():  # one process at a time per object
        runs.sort(key=lambda c: c["start"])
        for before, after in itertools.pairwise(runs):
            assert after["start"] >= before["end"], f"{key} reconciled by two processes at once"
    assert any(
        a["pid"] != b["pid"] and a["start"] < b["end"] and b["start"] < a["end"]
        for a in claims
        for b in claims
    ), "the two processes never worked at the same time"

    state = SimCluster(sim.folder).read()
    versions = [o["metadata"]["resourceVersion"] for o in state.objects.values()]
    assert len(versions) == len(set(versions))  # no two writes from one snapshot
    assert not any(entry.get("lease") for entry in state.schedule.values())
    for name in PHASES:
        ks = state.get("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", name)
        assert cond.is_ready(ks), cond.ready_reason(ks)
        inventory = {e["id"] for e in ks["status"]["inventory"]["entries"]}
        owned = {
            f"{o['metadata'].get('namespace', '')}_{o['metadata']['name']}__{o['kind']}"
            for o in state.objects.values()
            if (o["metadata"].get("labels") or {}).get("kustomize.toolkit.fluxcd.io/name") == name
        }
        assert inventory == owned == {f"_{name}__Namespace", *(f"{name}_c{i}__ConfigMap" for i in range(3))}
    for key in state.objects:
        namespace = key.split("|")[2]
        assert not namespace or state.get("", "Namespace", "", namespace) is not None, key
