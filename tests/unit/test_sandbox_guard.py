"""What the sandbox refuses before anything starts, and how it lays out its addresses (no root needed)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops import settings
from fluxops.errors import ConfigError, SandboxError
from fluxops.sandbox import guard, network

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "inventory" / "hosts.yaml"
SHIPPED = REPO / "inventory" / "sandbox.yaml"
SUBNET = IPv4Network("10.250.0.0/24")


def test_the_shipped_sandbox_inventory_passes_and_each_host_gets_its_own_30() -> None:
    guard.check_subnet(SUBNET, REAL, sandbox_inventory=SHIPPED)
    links = guard.check_hosts(inv.load(SHIPPED).hosts, SHIPPED, SUBNET)
    assert {name: (str(k.network), str(k.address), str(k.machine_address)) for name, k in links.items()} == {
        "n5": ("10.250.0.0/30", "10.250.0.2", "10.250.0.1"),
        "phx1": ("10.250.0.4/30", "10.250.0.6", "10.250.0.5"),
    }


def test_link_for_takes_either_usable_address_of_a_30() -> None:
    assert network.link_for("10.250.0.9").machine_address == IPv4Address("10.250.0.10")
    assert network.link_for("10.250.0.10").machine_address == IPv4Address("10.250.0.9")
    for bad in ("10.250.0.8", "10.250.0.11"):
        with pytest.raises(ValueError, match=r"network or broadcast address of 10\.250\.0\.8/30"):
            network.link_for(bad)


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("192.168.8.0/24", r"holds real hosts of .*hosts\.yaml: n5 \(192\.168\.8\.5\)"),
        ("192.168.0.0/16", r"holds real hosts of .*: n5 \(192\.168\.8\.5\)"),
        ("85.31.234.0/24", r"not inside a private range"),
        ("0.0.0.0/0", r"not inside a private range"),
        ("127.0.0.0/8", r"not inside a private range"),
        ("10.250.0.0/31", r"smaller than one /30"),
    ],
)
def test_a_subnet_that_could_reach_real_hosts_is_refused(subnet: str, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        guard.check_subnet(IPv4Network(subnet), REAL, sandbox_inventory=SHIPPED)


def test_the_real_inventory_is_read_even_when_it_is_broken(tmp_path: Path) -> None:
    broken = tmp_path / "hosts.yaml"
    broken.write_text("all: [not, a, mapping]\n")
    with pytest.raises(SandboxError, match="cannot read the real inventory"):
        guard.check_subnet(SUBNET, broken, sandbox_inventory=SHIPPED)


def test_subnet_strings_are_parsed_strictly() -> None:
    assert guard.parse_subnet("10.250.0.0/24") == SUBNET
    for bad in ("10.250.0.1/24", "fd00::/64", "ten"):
        with pytest.raises(SandboxError, match="is not an IPv4 network"):
            guard.parse_subnet(bad)


def test_the_subnet_setting(tmp_path: Path) -> None:
    section = {
        "inventory": "i.yaml",
        "key_dir": str(tmp_path / "keys"),
        "sandbox": {"inventory": "s", "dir": "d"},
    }
    assert settings.load(section, REPO).sandbox_subnet == SUBNET
    section["sandbox"]["subnet"] = "172.30.0.0/24"
    assert settings.load(section, REPO).sandbox_subnet == IPv4Network("172.30.0.0/24")
    section["sandbox"]["subnet"] = "10.250.0.0/33"
    with pytest.raises(ConfigError, match=r"fluxops\.sandbox\.subnet must be an IPv4 network"):
        settings.load(section, REPO)


def test_machine_names_fit_interface_names() -> None:
    assert network.veth_name("fx-0a1b2c-99") == "ve-fx-0a1b2c-99"
    with pytest.raises(SandboxError, match="too long for an interface name"):
        network.veth_name("fx-0a1b2c-1000")
