"""The remote preflight's flux CLI check on the simulator's k3s server and flux CLI: the version the node's
``flux --version`` prints against the one the inventory pins (``flux_version``, else node.yaml's
default), a leading "v" aside; a different one stops bootstrap before anything reaches the cluster."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fluxops.bootstrap.node import BootstrapError, Node
from fluxops.bootstrap.preflight_remote import pinned_flux_version, preflight_remote
from fluxops.bootstrap.run import bootstrap
from fluxops.sim.launcher import VERSION_ENV
from tests.unit.bootstrap_testing import REPO, SimHost, World, sim_host

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def node_host(world: World, tmp_path: Path) -> Iterator[SimHost]:
    with sim_host(tmp_path / "host", world.remote) as running:
        yield running


def flux_at(machine: SimHost, version: str) -> Node:
    """The simulated node, its flux CLI standing for ``version`` (as a launcher node.up installed pins it)."""
    node = machine.node()
    node.env = {**node.env, VERSION_ENV["flux"]: version}
    return node


def node_yaml_default() -> str:
    """The flux CLI version playbooks/node.yaml installs when the inventory pins none."""
    plays = yaml.safe_load((REPO / "playbooks/node.yaml").read_text())
    value = next(p["vars"]["flux_cli_version"] for p in plays if "flux_cli_version" in (p.get("vars") or {}))
    found = re.search(r"default\('([^']+)'\)", value)
    assert found, value
    return found.group(1)


def pin(world: World, version: str) -> None:
    """Pin the flux CLI of every host of the world's inventory at ``version``."""
    text = world.inventory.read_text()
    world.inventory.write_text(
        text.replace("    ansible_user: root\n", f"    ansible_user: root\n    flux_version: {version}\n", 1)
    )


@pytest.mark.parametrize(("found", "wanted"), [("2.7.2", "v2.7.2"), ("2.7.2", "2.7.2"), ("v2.8.0", "2.8.0")])
def test_the_pinned_version_passes_with_or_without_a_leading_v(
    node_host: SimHost, found: str, wanted: str
) -> None:
    facts = preflight_remote(flux_at(node_host, found), "lab", wanted)
    assert facts.flux_version == found.removeprefix("v")
    assert facts.nodes == ["n5"]


def test_another_version_is_refused_naming_host_versions_and_node_up(node_host: SimHost) -> None:
    node = flux_at(node_host, "2.6.1")
    with pytest.raises(BootstrapError) as refused:
        preflight_remote(node, "lab", "v2.7.2")
    message = str(refused.value)
    assert message.startswith(f"{node.name}: ")
    assert "version 2.6.1" in message and "v2.7.2 is pinned" in message
    assert "node.up --cluster lab` installs the pinned version" in message
    with pytest.raises(BootstrapError, match=r"version 2\.7\.2, but 2\.7\.20 is pinned"):
        preflight_remote(flux_at(node_host, "2.7.2"), "lab", "2.7.20")  # no prefix match


def test_the_pin_is_the_inventorys_flux_version_else_node_yamls_default(world: World) -> None:
    shutil.rmtree(world.root / "playbooks", ignore_errors=True)
    assert pinned_flux_version(world.target("lab")) is None  # no playbooks/node.yaml, no flux_version
    shutil.copytree(REPO / "playbooks", world.root / "playbooks")
    assert pinned_flux_version(world.target("lab")) == node_yaml_default()
    pinned = "v2.99.1"
    assert node_yaml_default() != pinned
    pin(world, pinned)
    assert pinned_flux_version(world.target("lab")) == pinned_flux_version(world.target("phx")) == pinned


def test_bootstrap_stops_at_a_flux_cli_the_inventory_does_not_pin_before_touching_the_cluster(
    world: World, node_host: SimHost
) -> None:
    pin(world, "v2.7.2")
    node = flux_at(node_host, "2.6.1")
    with pytest.raises(
        BootstrapError, match=r"^local: the flux CLI is version 2\.6\.1, but v2\.7\.2 is pinned"
    ):
        bootstrap(world.target("lab"), node, world.key_dir)
    assert not [c for c in node_host.calls("kubectl") if "apply" in c["argv"]]  # nothing was put there
    assert [c["argv"] for c in node_host.calls("flux")] and not [
        c for c in node_host.calls("flux") if "install" in c["argv"]
    ]
    report = bootstrap(world.target("lab"), flux_at(node_host, "2.7.2"), world.key_dir, check=True)
    assert dict(report.steps)["remote preflight"].endswith("flux 2.7.2")
