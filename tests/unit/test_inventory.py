"""Inventory loading: the shipped files, Ansible's variable precedence, and one error per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops.errors import InventoryError
from fluxops.masking import Secret

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


def test_sandbox_file_mirrors_hosts_file_on_loopback() -> None:
    real = inv.load(REPO / "inventory" / "hosts.yaml")
    sandbox = inv.load(REPO / "inventory" / "sandbox.yaml")
    assert {(h.cluster, h.name) for h in sandbox.hosts} == {(h.cluster, h.name) for h in real.hosts}
    assert all(h.is_loopback for h in sandbox.hosts)
    assert len({h.address for h in sandbox.hosts}) == len(sandbox.hosts)
    # relative paths are taken from the inventory file's folder
    assert sandbox.host("n5").key_file == (REPO / ".sandbox" / "id_ed25519").resolve()


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


BAD = {
    "yaml syntax": (
        "all:\n  children:\n    lab:\n      hosts:\n        n5: {ansible_host: a\n",
        None,
        "YAML error",
    ),
    "duplicate key": (
        "all:\n  children:\n    lab:\n      hosts:\n        n5: {ansible_host: a}\n        n5: {}\n",
        6,
        "once",
    ),
    "no all": ("lab:\n  hosts: {}\n", 1, "must start with 'all:'"),
    "host in two clusters": (
        "all:\n  children:\n    lab:\n      hosts:\n        n5: {ansible_host: a}\n"
        "    phx:\n      hosts:\n        n5: {ansible_host: b}\n",
        8,
        "two clusters",
    ),
    "missing address": (
        "all:\n  children:\n    lab:\n      hosts:\n        n5:\n          ansible_port: 22\n",
        5,
        "has no address",
    ),
    "port is a string": (
        "all:\n  children:\n    lab:\n      hosts:\n        n5:\n          ansible_host: a\n"
        "          ansible_port: '22'\n",
        7,
        "ansible_port must be a port number",
    ),
    "port out of range": (
        "all:\n  children:\n    lab:\n      hosts:\n        n5:\n          ansible_host: a\n"
        "          ansible_port: 70000\n",
        7,
        "out of range",
    ),
    "become not a bool": (
        "all:\n  vars:\n    ansible_become: 'yes'\n  children:\n    lab:\n      hosts:\n"
        "        n5: {ansible_host: a}\n",
        7,
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
        "all:\n  hosts:\n    n5: {ansible_host: a}\n  children:\n    lab:\n      hosts:\n"
        "        n6: {ansible_host: b}\n",
        3,
        "in no cluster",
    ),
    "bad cluster name": (
        "all:\n  children:\n    Lab_1:\n      hosts:\n        n5: {ansible_host: a}\n",
        3,
        "not valid",
    ),
    "empty cluster": ("all:\n  children:\n    lab:\n      hosts: {}\n", 3, "has no hosts"),
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
    if line is not None:
        assert error.line == line, str(error)
    else:
        assert error.line is not None


def test_unknown_cluster_and_host_list_the_known_ones() -> None:
    inventory = inv.load(REPO / "inventory" / "hosts.yaml")
    with pytest.raises(InventoryError, match=r"unknown cluster 'nope'; clusters here: lab, phx"):
        inventory.cluster("nope")
    with pytest.raises(InventoryError, match=r"unknown host 'n9'; hosts here: n5, phx1"):
        inventory.host("n9")


def test_missing_file_says_how_to_point_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="INVOKE_FLUXOPS_INVENTORY"):
        inv.load(tmp_path / "absent.yaml")
