"""bootstrap against the real cluster the environment names (tests/real/conftest.py; docs/bootstrap.md,
"Against a real host"): ``--check`` first, which changes nothing, then the bootstrap, then every phase
Ready in the cluster's status. Only with ``-m real_cluster`` and both variables set."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxops.bootstrap.node import for_host
from fluxops.bootstrap.run import bootstrap
from fluxops.bootstrap.status import status_of
from fluxops.bootstrap.target import target_for
from fluxops.shell import Connections
from tests.real.conftest import RealCluster

pytestmark = [pytest.mark.real_cluster, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

REPO = Path(__file__).resolve().parents[2]


def test_the_real_cluster_bootstraps_with_every_phase_ready(real_cluster: RealCluster) -> None:
    target = target_for(REPO, real_cluster.inventory, real_cluster.cluster)
    assert target.host.address in real_cluster.addresses
    with Connections(connect_timeout=15) as conns:
        node = for_host(conns, target.host)
        before = {(k["metadata"]["name"], k["metadata"].get("generation")) for k in node.kustomizations()}
        checked = bootstrap(target, node, real_cluster.key_dir, check=True)
        assert checked.plan is not None and checked.outcome is None
        assert {
            (k["metadata"]["name"], k["metadata"].get("generation")) for k in node.kustomizations()
        } == before
        planned = {p.name for p in checked.plan.phases}
        assert target.entry in planned and len(planned) > 1, checked.plan.phases
        report = bootstrap(target, node, real_cluster.key_dir)
        assert report.ok, (report.outcome, report.steps)
        assert report.outcome is not None
        assert {p.name for p in report.outcome.phases} >= planned
        status = status_of(node, real_cluster.cluster, target.entry)
    assert not status.error, status.error
    assert status.kustomizations and status.ok, [(r.name, r.ready, r.message) for r in status.kustomizations]
    assert {r.name for r in status.kustomizations} >= planned
