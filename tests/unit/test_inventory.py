"""Inventory loading: the shipped files, Ansible's variable precedence, and one error per bad input."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops.errors import InventoryError
from fluxops.masking import Secret
from fluxops.settings import DEFAULT_SANDBOX_SUBNET

REPO = Path(__file__).resolve().parents[2]


def load_text(tmp_path: Path, text: str) -> inv.Inventory:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return inv.load(path)


def test_shipped_hosts_file_loads() -> None:
    inventory = inv.load(REPO / "inventory" / "hosts.yaml")
    assert sorted(inventory.clusters) == ["lab", "phx"]
    n5 = inventory.host("n5")
    assert n5.cluster == "lab"
    assert n5.address.startswith("192.168.8.")
    phx = inventory.host("phx1")
    assert (phx.cluster, phx.address, phx.become) == ("phx", "85.31.234.30", True)
    assert not n5.is_loopback and not phx.is_loopback


def test_sandbox_file_mirrors_hosts_file_on_the_sandbox_subnet() -> None:
    real = inv.load(REPO / "inventory" / "hosts.yaml")
    sandbox = inv.load(REPO / "inventory" / "sandbox.yaml", root=REPO)
    assert {(h.cluster, h.name, h.role) for h in sandbox.hosts} == {
        (h.cluster, h.name, h.role) for h in real.hosts
    }
    assert {h.name: (h.address, h.port) for h in sandbox.hosts} == {
        "n5": ("10.250.0.2", 22),
        "phx1": ("10.250.0.6", 22),
    }
    assert all(ipaddress.ip_address(h.address) in DEFAULT_SANDBOX_SUBNET for h in sandbox.hosts)
    pinned = ("k3s_version", "flux_version", "flux_path", "k3s_disable")  # what the nodes run
    assert {h.name: [h.vars.get(v) for v in pinned] for h in sandbox.hosts} == {
        h.name: [h.vars.get(v) for v in pinned] for h in real.hosts
    }
    assert not any(h.is_loopback for h in sandbox.hosts)
    # relative paths are taken from the root (the folder Ansible runs in), known_hosts from ssh's options
    n5 = sandbox.host("n5")
    assert n5.key_file == REPO / ".sandbox" / "id_ed25519"
    assert n5.known_hosts == REPO / ".sandbox" / "known_hosts"


def test_relative_paths_follow_the_root_and_home_is_expanded(tmp_path: Path) -> None:
    path = tmp_path / "inventory" / "hosts.yaml"
    path.parent.mkdir()
    path.write_text(
        "all:\n  children:\n    lab:\n      hosts:\n        n5:\n          ansible_host: 127.0.0.2\n"
        "          ansible_ssh_private_key_file: keys/id\n          fluxops_known_hosts_file: ~/kh\n"
    )
    host = inv.load(path, root=tmp_path / "elsewhere").host("n5")
    assert host.key_file == tmp_path / "elsewhere" / "keys" / "id"
    assert host.known_hosts == Path.home() / "kh"


PRECEDENCE = """\
all:
  vars: {level: all, only_all: a, ansible_user: alluser}
  children:
    lab:
      vars: {level: group, only_group: g}
      hosts:
        n5: {ansible_host: 10.0.0.5, level: host}
      children:
        lab-workers:
          vars: {level: subgroup, ansible_user: worker}
          hosts:
            w1: {ansible_host: 10.0.0.6}
"""


def test_variables_resolve_host_over_group_over_all(tmp_path: Path) -> None:
    inventory = load_text(tmp_path, PRECEDENCE)
    n5 = inventory.host("n5")
    assert n5.vars["level"] == "host"
    assert (n5.vars["only_all"], n5.vars["only_group"]) == ("a", "g")
    assert n5.user == "alluser"
    w1 = inventory.host("w1")
    assert (w1.cluster, w1.vars["level"], w1.user) == ("lab", "subgroup", "worker")
    assert [h.name for h in inventory.cluster("lab").hosts] == ["n5", "w1"]


def test_secret_values_are_masked(tmp_path: Path) -> None:
    inventory = load_text(
        tmp_path,
        "all:\n  vars:\n    db_password: hunter2\n    tunnel: !secret s3cr3t-value\n"
        "  children:\n    lab:\n      hosts:\n        n5: {ansible_host: 10.0.0.5}\n",
    )
    host = inventory.host("n5")
    assert isinstance(host.vars["db_password"], Secret)
    assert host.vars["tunnel"].reveal() == "s3cr3t-value"
    shown = json.dumps(inv.as_dict(inventory.hosts))
    assert "hunter2" not in shown and "s3cr3t-value" not in shown
    assert host.public_vars()["tunnel"] == "***"


LAB = "all:\n  children:\n    lab:\n      hosts:\n"
BAD = {
    "yaml syntax": (LAB + "        n5: {ansible_host: a\n", 6, "YAML error"),
    "duplicate key": (LAB + "        n5: {ansible_host: a}\n        n5: {}\n", 6, "once"),
    "host in two clusters": (
        LAB + "        n5: {ansible_host: a}\n    phx:\n      hosts:\n        n5: {ansible_host: b}\n",
        8,
        "two clusters",
    ),
    "no address": (LAB + "        'my host':\n          ansible_port: 22\n", 5, "has no address"),
    "port is a word": (
        LAB + "        n5:\n          ansible_port: ssh\n",
        6,
        "ansible_port must be a port number",
    ),
    "port out of range": (LAB + "        n5:\n          ansible_port: 70000\n", 6, "out of range"),
    "become not a boolean": (
        "all:\n  vars:\n    ansible_become: maybe\n  children:\n    lab:\n      hosts:\n        n5:\n",
        3,
        "ansible_become must be true or false",
    ),
    "hosts not a mapping": (
        "all:\n  children:\n    lab:\n      hosts:\n        - n5\n",
        4,
        "must be a mapping",
    ),
    "unknown group key": (
        "all:\n  children:\n    lab:\n      host:\n        n5: {ansible_host: a}\n",
        4,
        "unknown key 'host'",
    ),
    "host outside any cluster": (
        "all:\n  hosts:\n    n5: {ansible_host: a}\n  children:\n    lab:\n      hosts:\n        n6:\n",
        3,
        "in no cluster",
    ),
    "empty cluster": ("all:\n  children:\n    lab:\n      hosts: {}\n", 3, "has no hosts"),
    "no clusters": ("all:\n  vars: {a: 1}\n", None, "no clusters"),
    "host named like a group": (
        "all:\n  children:\n    phx:\n      hosts:\n        phx:\n",
        5,
        "has the name of a group",
    ),
    "group name is a boolean": ("all:\n  children:\n    yes:\n      hosts: {n5: }\n", 3, "quote it"),
    "host name is a number": (LAB + "        10:\n", 5, "must be a string"),
    "bad range": (LAB + "        node[1:x]:\n", 5, "two numbers or two letters"),
    "range end missing": (LAB + "        node[1:]:\n", 5, "end value"),
    "group loop": (
        "all:\n  children:\n    lab:\n      children:\n        lab:\n          hosts: {n5: }\n",
        5,
        "loop",
    ),
    "bad group priority": (
        "all:\n  children:\n    lab:\n      vars:\n        ansible_group_priority: high\n"
        "      hosts: {n5: }\n",
        5,
        "ansible_group_priority must be a whole number",
    ),
    "unknown yaml tag": (LAB + "        n5: {ansible_host: !host a}\n", 5, "!unsafe and !vault"),
    "k3s_role unknown": (LAB + "        n5: {k3s_role: master}\n", 5, "k3s_role must be 'server' or 'agent'"),
    "server and agent": (
        "all:\n  children:\n    k3s:\n      children:\n        server:\n          hosts: {n5: }\n"
        "        agent:\n          hosts: {n5: }\n",
        6,
        "both the server and the agent group",
    ),
    "no server": (
        "all:\n  children:\n    k3s:\n      hosts:\n        n4: {k3s_role: agent}\n"
        "        n5: {k3s_role: agent}\n",
        3,
        "has no server",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inventory_names_file_line_and_fix(tmp_path: Path, case: str) -> None:
    text, line, phrase = BAD[case]
    with pytest.raises(InventoryError) as caught:
        load_text(tmp_path, text)
    error = caught.value
    assert error.path == str(tmp_path / "hosts.yaml")
    assert phrase in str(error)
    assert str(error).startswith(str(tmp_path / "hosts.yaml"))
    assert error.line == line, str(error)


def test_unknown_cluster_and_host_list_the_known_ones() -> None:
    inventory = inv.load(REPO / "inventory" / "hosts.yaml")
    with pytest.raises(InventoryError, match=r"unknown cluster 'nope'; clusters here: lab, phx"):
        inventory.cluster("nope")
    with pytest.raises(InventoryError, match=r"unknown host 'n9'; hosts here: n5, phx1"):
        inventory.host("n9")


def test_missing_file_says_how_to_point_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="INVOKE_FLUXOPS_INVENTORY"):
        inv.load(tmp_path / "absent.yaml")
