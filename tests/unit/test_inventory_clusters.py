"""Clusters and k3s roles: each group under all by default, or the groups fluxops.clusters names; roles
from server/agent groups, k3s_role, else the first host; SSH settings as Ansible's ssh plugin reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops import settings
from fluxops.errors import ConfigError, InventoryError
from fluxops.masking import Secret

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "inventories"
K3S_SAMPLE = CORPUS / "k3s-sample" / "inventory.yml"


def roles(inventory: inv.Inventory) -> dict[str, tuple[str, str]]:
    return {h.name: (h.cluster, h.role) for h in inventory.hosts}


def test_the_k3s_ansible_sample_loads_as_is() -> None:
    inventory = inv.load(K3S_SAMPLE)
    assert roles(inventory) == {
        "192.0.2.11": ("k3s_cluster", "server"),
        "192.0.2.12": ("k3s_cluster", "agent"),
        "192.0.2.13": ("k3s_cluster", "agent"),
    }
    server = inventory.host("192.0.2.11")
    assert (server.address, server.port, server.user) == ("192.0.2.11", 22, "debian")
    assert isinstance(server.vars["token"], Secret) and server.public_vars()["token"] == "***"


def test_fluxops_clusters_names_the_cluster_group() -> None:
    inventory = inv.load(K3S_SAMPLE, clusters={"edge": "k3s_cluster"})
    assert list(inventory.clusters) == ["edge"]
    assert inventory.cluster("edge").group == "k3s_cluster"
    assert [(h.name, h.role) for h in inventory.select("edge")] == [
        ("192.0.2.11", "server"),
        ("192.0.2.12", "agent"),
        ("192.0.2.13", "agent"),
    ]


def test_the_ini_shape_gets_roles_from_groups_and_values_as_ansible_reads_them() -> None:
    inventory = inv.load(CORPUS / "k3s-ini" / "hosts.ini")
    assert {h.name: h.role for h in inventory.hosts} == {
        "192.0.2.21": "server",
        "192.0.2.22": "agent",
        "192.0.2.23": "agent",
        "192.0.2.24": "agent",
        "worker-a.example.test": "agent",
        "worker-b.example.test": "agent",
    }
    server, agent = inventory.host("192.0.2.21"), inventory.host("worker-a.example.test")
    assert (server.user, server.port, server.become) == ("ubuntu", 2222, False)
    assert (agent.user, agent.address, agent.become) == ("debian", "worker-a.example.test", True)


def test_only_the_named_groups_are_clusters_and_other_hosts_stay_out(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "all:\n  hosts:\n    bastion.example.test:\n  children:\n    k3s_cluster:\n      children:\n"
        "        agent:\n          hosts: {192.0.2.2: , 192.0.2.3: }\n"
        "        server:\n          hosts: {192.0.2.1: }\n    monitoring:\n      hosts: {192.0.2.9: }\n"
    )
    inventory = inv.load(path, clusters={"prod": "k3s_cluster"})
    assert roles(inventory) == {
        "192.0.2.1": ("prod", "server"),
        "192.0.2.2": ("prod", "agent"),
        "192.0.2.3": ("prod", "agent"),
    }
    with pytest.raises(InventoryError, match="in no cluster") as caught:
        inv.load(path)  # by default every host must be in a cluster
    assert caught.value.line == 3


def test_a_role_comes_from_k3s_role_else_the_first_host_is_the_server(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "all:\n  children:\n    lab:\n      hosts:\n        n1:\n        n2:\n        n3:\n"
        "    phx:\n      hosts:\n        p1:\n        p2: {k3s_role: server}\n        p3:\n"
    )
    assert roles(inv.load(path)) == {
        "n1": ("lab", "server"),
        "n2": ("lab", "agent"),
        "n3": ("lab", "agent"),
        "p1": ("phx", "agent"),
        "p2": ("phx", "server"),
        "p3": ("phx", "agent"),
    }


def test_a_group_name_is_global_so_one_host_can_land_in_two_clusters(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "all:\n  children:\n    lab:\n      children:\n        shared:\n          hosts: {n1: }\n"
        "    phx:\n      hosts: {p1: }\n      children:\n        shared:\n"
    )
    with pytest.raises(InventoryError, match=r"host 'n1' is in two clusters \('lab' and 'phx'\)"):
        inv.load(path)


def test_a_cluster_mapped_to_a_missing_group_lists_the_groups() -> None:
    with pytest.raises(
        InventoryError,
        match=r"group 'k3s', which this inventory does not have; groups here: "
        r"k3s_cluster, server, agent",
    ) as caught:
        inv.load(K3S_SAMPLE, clusters={"edge": "k3s"})
    assert caught.value.path == str(K3S_SAMPLE)


def test_ssh_settings_follow_ansibles_ssh_plugin() -> None:
    inventory = inv.load(CORPUS / "aliases" / "hosts.yaml", root=Path("/"))
    got = {h.name: (h.address, h.port, h.user) for h in inventory.hosts}
    assert got == {
        "vm1.cloud.example.test": ("198.51.100.7", 2200, "core"),
        "vm2.cloud.example.test": ("198.51.100.9", 2201, "admin"),  # ansible_ssh_host wins over ansible_host
        "2001:db8::20": ("2001:db8::20", 2202, "admin"),
        "203.0.113.5": ("203.0.113.5", 22, "admin"),
    }
    ip = inventory.host("203.0.113.5")
    assert ip.become and ip.key_file == Path.home() / ".ssh" / "cloud"
    assert ip.public_vars()["ansible_become_password"] == "***"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"lab": "k3s_cluster"}, None),
        ({"lab": ""}, "must map cluster names"),
        (["lab"], "must map cluster names"),
    ],
)
def test_the_clusters_setting_is_checked(tmp_path: Path, value: object, error: str | None) -> None:
    section = {"inventory": "inventory/hosts.yaml", "key_dir": str(tmp_path / "keys"), "clusters": value}
    section |= {"sandbox": {"inventory": "inventory/sandbox.yaml", "dir": ".sandbox"}}
    if error is None:
        assert settings.load(section, REPO).clusters == value
    else:
        with pytest.raises(ConfigError, match=error):
            settings.load(section, REPO)


def test_inventory_show_prints_each_hosts_role(tmp_path: Path) -> None:
    config = tmp_path / "fluxops.yaml"
    config.write_text(f"fluxops:\n  inventory: {K3S_SAMPLE}\n  clusters:\n    edge: k3s_cluster\n")
    env = {**os.environ, "COLUMNS": "200"}
    run = [sys.executable, "-m", "invoke", "-f", str(config), "inventory.show"]
    table = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert table.returncode == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if "cluster" in line and "role" in line)
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in table.stdout.splitlines()
        if "192.0.2.1" in line
    ]
    column = [cell.strip() for cell in header.split("┃")[1:-1]].index("role")
    assert [(row[1], row[column]) for row in rows] == [
        ("192.0.2.11", "server"),
        ("192.0.2.12", "agent"),
        ("192.0.2.13", "agent"),
    ]
    shown = subprocess.run(
        [*run, "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert [(h["cluster"], h["role"]) for h in json.loads(shown.stdout)] == [
        ("edge", "server"),
        ("edge", "agent"),
        ("edge", "agent"),
    ]
