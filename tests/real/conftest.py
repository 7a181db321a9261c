"""Opt-in tests against a real cluster: collected for ``-m real_cluster`` alone, and reaching exactly the
configured cluster's hosts.

Without a mark expression naming ``real_cluster`` every test here is deselected (never run, never a
pass). With one but without ``FLUXOPS_REAL_INVENTORY`` and ``FLUXOPS_REAL_CLUSTER`` each is skipped
with the reason. When both are set, the network guard of tests/conftest.py lets the addresses of that
cluster's hosts through as well, and the test runs with the operator's own home (SSH key,
known_hosts, age key store) instead of the suite's throwaway one.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from fluxops import inventory as inv
from fluxops import settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MARK = "real_cluster"
INVENTORY_ENV, CLUSTER_ENV, KEY_DIR_ENV = (
    "FLUXOPS_REAL_INVENTORY",
    "FLUXOPS_REAL_CLUSTER",
    "FLUXOPS_REAL_KEY_DIR",
)
OPERATOR_HOME = os.environ.get("HOME", "")  # before the suite's isolated_home replaces it per test


@dataclass(frozen=True)
class RealCluster:
    """The configured real cluster: its inventory, name, key store and host addresses."""

    inventory: inv.Inventory
    cluster: str
    key_dir: Path
    addresses: frozenset[str]


def asked_for(config: pytest.Config) -> bool:
    """Does the run's mark expression (``-m``) name real_cluster?"""
    return re.search(rf"\b{MARK}\b", str(config.getoption("markexpr") or "")) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect this folder's real_cluster tests unless ``-m`` names real_cluster."""
    if asked_for(config):
        return
    ours = [i for i in items if i.get_closest_marker(MARK) and HERE in Path(i.path).parents]
    if ours:
        config.hook.pytest_deselected(items=ours)
        items[:] = [i for i in items if i not in ours]


def _addresses(hosts: tuple[inv.Host, ...]) -> frozenset[str]:
    """The hosts' addresses as the inventory writes them, and what a name among them resolves to."""
    found = set()
    for host in hosts:
        found.add(host.address)
        for *_, sockaddr in socket.getaddrinfo(host.address, host.port, proto=socket.IPPROTO_TCP):
            found.add(str(sockaddr[0]))
    return frozenset(found)


def configured() -> RealCluster:
    """The cluster the environment names (the repository's invoke.yaml for cluster groups and the key
    store, which FLUXOPS_REAL_KEY_DIR overrides); a skip saying what to set when it names none."""
    path, cluster = os.environ.get(INVENTORY_ENV, ""), os.environ.get(CLUSTER_ENV, "")
    if not path or not cluster:
        pytest.skip(f"no real cluster configured: set {INVENTORY_ENV} (an inventory file) and {CLUSTER_ENV}")
    project = settings.load((yaml.safe_load((REPO / "invoke.yaml").read_text()) or {}).get("fluxops"), REPO)
    loaded = inv.load(Path(path).expanduser().resolve(), clusters=project.clusters, root=REPO)
    key_dir = Path(os.environ[KEY_DIR_ENV]).expanduser() if os.environ.get(KEY_DIR_ENV) else project.key_dir
    return RealCluster(loaded, cluster, key_dir, _addresses(loaded.cluster(cluster).hosts))


@pytest.fixture
def real_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[RealCluster]:
    """The configured cluster (skipped when none is), with the operator's home and the network guard
    letting exactly its hosts' addresses through for the test."""
    monkeypatch.setenv("HOME", OPERATOR_HOME)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    real = configured()
    guarded = sys.modules.get(getattr(socket.socket.connect, "__module__", ""))  # tests/conftest.py's guard
    refuse: Callable[[int, object], None] | None = getattr(guarded, "guard_address", None)
    if refuse is None:
        pytest.fail("the network guard of tests/conftest.py is not installed", pytrace=False)

    def guard(family: int, address: object) -> None:
        host = address[0] if isinstance(address, tuple) and address else address
        if family in (socket.AF_INET, socket.AF_INET6) and str(host).split("%", 1)[0] in real.addresses:
            return
        refuse(family, address)

    monkeypatch.setattr(guarded, "guard_address", guard)
    yield real
