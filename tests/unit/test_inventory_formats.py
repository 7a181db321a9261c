"""Which reader takes a file, and the errors of the INI format, each with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops.errors import InventoryError
from tests.unit.inventory_oracle import ansible_list, fluxops_list

INI_BAD = {
    "unknown section type": ("[lab:var]\na=1\n", 1, "section [lab:var] has an unknown type"),
    "spaces in a section": ("[lab servers]\nn5\n", 1, "invalid section '[lab servers]'"),
    "undeclared child": (
        "[k3s:children]\nserver\n[k3s:vars]\na=1\n",
        2,
        "names group 'server', which is never declared",
    ),
    "vars of an undeclared group": (
        "[lab]\nn5\n[web:vars]\na=1\n",
        3,
        "section [web:vars] is for a group that is never",
    ),
    "host variable without =": ("[lab]\nn5 ansible_host\n", 2, "expected key=value for a host variable"),
    "group variable without =": (
        "[lab]\nn5\n[lab:vars]\njust words\n",
        4,
        "expected key=value for a group variable",
    ),
    "host ending in a colon": ("[lab]\nn5:\n", 2, "ends in ':'"),
    "unclosed quote": ("[lab]\nn5 motd='hello\n", 2, "cannot split host line"),
    "bad range": ("[lab]\nnode[3:1:0]\n", 2, "the step must be 1 or more"),
}


@pytest.mark.parametrize("case", sorted(INI_BAD))
def test_ini_mistakes_name_the_line(tmp_path: Path, case: str) -> None:
    text, line, phrase = INI_BAD[case]
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    with pytest.raises(InventoryError) as caught:
        inv.load(path)
    assert (caught.value.path, caught.value.line) == (str(path), line)
    assert phrase in str(caught.value)


def test_ini_text_in_a_yml_file_is_read_as_ini_as_ansible_does(tmp_path: Path) -> None:
    path = tmp_path / "inventory" / "hosts.yml"
    path.parent.mkdir()
    path.write_text("[lab]\nn5.example.test ansible_host=192.0.2.70 answer=42\n\n[lab:vars]\nnamed=yml\n")
    ours = fluxops_list(path)
    assert ours == ansible_list(path, tmp_path / "ansible")
    assert ours["_meta"]["hostvars"]["n5.example.test"]["answer"] == 42


def test_a_file_named_yaml_reports_its_yaml_error(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("all:\n  children:\n    lab:\n      hosts:\n        n5: [\n")
    with pytest.raises(InventoryError, match="YAML error") as caught:
        inv.load(path)
    assert caught.value.line == 6 and "INI" not in str(caught.value)


def test_a_file_without_extension_that_is_neither_says_both(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("all:\n  children: [\n")
    with pytest.raises(
        InventoryError, match=r"neither a YAML inventory \(line 3: YAML error.*\) nor an INI one \(line 1: "
    ):
        inv.load(path)


def test_an_ini_file_is_never_read_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("all:\n  hosts:\n    n5:\n")
    with pytest.raises(InventoryError, match="ends in ':'") as caught:
        inv.load(path)
    assert caught.value.line == 1


def test_an_empty_inventory_has_no_clusters(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(InventoryError, match="no clusters"):
        inv.load(path)
    assert list(inv.read(path).graph.groups) == ["all", "ungrouped"]


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_bytes(b"all:\n  vars:\n    motd: caf\xe9\n")
    with pytest.raises(InventoryError, match="not UTF-8"):
        inv.load(path)


def test_an_ini_host_line_takes_quotes_comments_and_ranges(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("[lab]\nn[1:2].example.test motd='hello world' port_list=\"[22, 2222]\"  # two hosts\n")
    inventory = inv.load(path)
    assert [h.name for h in inventory.hosts] == ["n1.example.test", "n2.example.test"]
    assert inventory.host("n2.example.test").vars["motd"] == "hello world"
    assert inventory.host("n1.example.test").vars["port_list"] == [22, 2222]
