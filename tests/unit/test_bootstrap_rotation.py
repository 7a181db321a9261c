"""Key rotation with the cluster online: keys.rotate's steps 3 and 6 put the keys into the bootstrapped
simulated cluster's sops-age Secret and prove every phase still decrypts; an unreachable cluster stops
the rotation before any file loses the old key."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxops.bootstrap.run import bootstrap
from fluxops.bootstrap.status import status_of
from fluxops.errors import RotationError
from fluxops.secrets import keystore, rotation
from fluxops.secrets.encrypted import file_recipients
from fluxops.secrets.walk import encrypted_files
from tests.unit.bootstrap_testing import SimHost, World, sim_host
from tests.unit.sim_testing import git
from tests.unit.sops_testing import decrypts_with

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def machine(world: World, tmp_path: Path) -> Iterator[SimHost]:
    with sim_host(tmp_path / "host", world.remote) as running:
        yield running


def quiet(_: str) -> None:
    pass


def test_rotation_online_keeps_every_phase_ready(world: World, machine: SimHost) -> None:
    assert bootstrap(world.target("lab"), machine.node(), world.key_dir).ok
    old_public = keystore.public_key(world.key_dir / "lab.agekey")

    @contextlib.contextmanager
    def opener(host: Any) -> Iterator[Any]:
        yield machine.node()

    push = functools.partial(rotation.push_keys, root=world.root, inventory=world.inventory, open_node=opener)
    run = rotation.Rotation(world.root, world.key_dir, "lab", push=push, report=quiet)
    with pytest.raises(RotationError, match=r"stopped at step 6: .*not committed yet.*--resume"):
        run.run()
    journal = rotation.Journal.load(rotation.journal_path(world.key_dir, "lab"))
    assert journal is not None and [journal.state(n) for n in range(1, 6)] == ["done"] * 5
    assert "phase(s) reconciled Ready" in journal.steps["3"]["detail"]
    assert status_of(machine.node(), "lab").ok  # the cluster holds both keys: all Ready
    git(world.root, "add", "-A")
    git(world.root, "commit", "-q", "-m", "rotate lab's key")
    world.push()
    finished = rotation.Rotation(world.root, world.key_dir, "lab", push=push, report=quiet).run(resume=True)
    assert finished.finished and finished.state(6) == "done"
    new_public = keystore.public_key(world.key_dir / "lab.agekey")
    assert new_public != old_public
    status = status_of(machine.node(), "lab")
    assert status.ok, [(r.name, r.message) for r in status.kustomizations if r.ready != "True"]
    head = git(world.root, "rev-parse", "main")
    assert {r.revision for r in status.kustomizations} == {f"main@sha1:{head}"}


def test_an_unreachable_cluster_stops_the_rotation_before_any_file_loses_the_old_key(
    world: World, machine: SimHost
) -> None:
    from fluxops.errors import FluxopsError

    @contextlib.contextmanager
    def unreachable(host: Any) -> Iterator[Any]:
        raise FluxopsError(f"{host.name}: connection refused")
        yield

    push = functools.partial(
        rotation.push_keys, root=world.root, inventory=world.inventory, open_node=unreachable
    )
    old_file = world.key_dir / "lab.agekey"
    with pytest.raises(RotationError, match=r"stopped before step 4.*connection refused.*--resume"):
        rotation.Rotation(world.root, world.key_dir, "lab", push=push, report=quiet).run()
    files = encrypted_files(world.root, "lab")
    assert files
    for path in files:  # what the cluster holds (the old key) still decrypts every file
        assert decrypts_with(world.root, path, old_file)
        assert keystore.public_key(old_file) in file_recipients(path)
