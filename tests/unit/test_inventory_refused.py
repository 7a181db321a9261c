"""What fluxops deliberately does not read - vault values, scripts, plugins, TOML, folders - each refused
with its own message naming the file and line, and never half-read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops.errors import InventoryError

CIPHERTEXT = "$ANSIBLE_VAULT;1.1;AES256\n6231336265313462\n3834383131613638\n"


def vault(indent: int) -> str:
    """A ``!vault |`` value whose ciphertext lines are indented by ``indent`` spaces."""
    pad = " " * indent
    return "!vault |\n" + "".join(f"{pad}{line}\n" for line in CIPHERTEXT.splitlines())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refused(path: Path) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        inv.load(path)
    return caught.value


def test_a_vault_value_is_named_never_passed_on(tmp_path: Path) -> None:
    path = write(
        tmp_path / "hosts.yaml",
        "all:\n  children:\n    lab:\n      hosts:\n        n5:\n          ansible_host: 127.0.0.2\n"
        f"          ansible_become_password: {vault(12)}",
    )
    error = refused(path)
    assert (error.path, error.line) == (str(path), 7)
    assert "'ansible_become_password'" in str(error)
    assert "vault-encrypted values are not supported yet" in str(error)
    assert "ANSIBLE_VAULT" not in str(error) and "6231336265313462" not in str(error)


def test_a_vault_value_inside_a_list_is_refused_at_its_own_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "hosts.yaml",
        "all:\n  vars:\n    tokens:\n      - plain\n      - "
        + vault(8)
        + "  children:\n    lab:\n      hosts:\n        n5:\n",
    )
    error = refused(path)
    assert (error.line, "'tokens'" in str(error)) == (5, True)


def test_a_vault_value_in_group_vars_names_that_file(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.yaml", "all:\n  children:\n    lab:\n      hosts:\n        n5:\n")
    secret = write(tmp_path / "group_vars" / "lab" / "secrets.yml", f"plain: 1\ndb_password: {vault(2)}")
    error = refused(path)
    assert (error.path, error.line) == (str(secret), 2)
    assert "'db_password'" in str(error)


def test_a_vault_value_in_json_is_refused(tmp_path: Path) -> None:
    data = {"all": {"children": {"lab": {"hosts": {"n5": {"token": {"__ansible_vault": CIPHERTEXT}}}}}}}
    error = refused(write(tmp_path / "hosts.json", json.dumps(data)))
    assert "'token'" in str(error) and "vault-encrypted values are not supported yet" in str(error)


@pytest.mark.parametrize("where", ["hosts.yaml", "group_vars/all.yml", "host_vars/n5"])
def test_a_vault_encrypted_file_is_refused(tmp_path: Path, where: str) -> None:
    path = write(tmp_path / "hosts.yaml", "all:\n  children:\n    lab:\n      hosts:\n        n5:\n")
    encrypted = write(tmp_path / where, CIPHERTEXT)
    error = refused(path)
    assert (error.path, error.line) == (str(encrypted), 1)
    assert "vault-encrypted files are not supported yet" in str(error)


def test_a_vault_value_no_host_ends_up_with_is_not_in_the_way(tmp_path: Path) -> None:
    path = write(
        tmp_path / "hosts.yaml",
        f"all:\n  vars:\n    token: {vault(6)}"
        "  children:\n    lab:\n      hosts:\n        n5: {token: plain}\n",
    )
    assert inv.load(path).host("n5").vars["token"].reveal() == "plain"


def test_an_inventory_script_is_never_run(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    script = write(tmp_path / "inventory.py", f"#!/bin/sh\ntouch {ran}\necho '{{}}'\n")
    script.chmod(0o755)
    error = refused(script)
    assert (error.path, error.line) == (str(script), 1)
    assert "dynamic inventory" in str(error) and "ansible-inventory -i" in str(error)
    assert not ran.exists()


def test_an_executable_file_without_a_shebang_is_read_as_a_static_inventory(tmp_path: Path) -> None:
    path = write(tmp_path / "hosts.yaml", "all:\n  children:\n    lab:\n      hosts:\n        n5:\n")
    path.chmod(0o755)  # Ansible cannot run it either, and goes on to the YAML reader
    assert [h.name for h in inv.load(path).hosts] == ["n5"]


@pytest.mark.parametrize("name", ["aws_ec2.yml", "constructed.yaml", "plugin.json"])
def test_an_inventory_plugin_configuration_is_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "# dynamic hosts\nplugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n")
    if name.endswith(".json"):
        path.write_text('{"plugin": "amazon.aws.aws_ec2"}')
    error = refused(path)
    assert error.path == str(path) and error.line == (2 if not name.endswith(".json") else None)
    assert "inventory plugin 'amazon.aws.aws_ec2'" in str(error) and "static inventories only" in str(error)


def test_a_toml_inventory_is_refused(tmp_path: Path) -> None:
    error = refused(write(tmp_path / "hosts.toml", "[lab.hosts.n5]\nansible_host = '127.0.0.2'\n"))
    assert "TOML inventories are not supported yet" in str(error) and "--yaml" in str(error)


def test_an_inventory_folder_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "inventory" / "hosts.yaml", "all:\n  children:\n    lab:\n      hosts:\n        n5:\n")
    error = refused(tmp_path / "inventory")
    assert error.path == str(tmp_path / "inventory") and "is a folder" in str(error)
