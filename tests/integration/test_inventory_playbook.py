"""The shipped sandbox inventory works with plain ansible-playbook run from the repository root."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fluxops import inventory as inv
from fluxops.shell import RemoteShell
from tests.conftest import REPO
from tests.unit.inventory_oracle import ansible_env

pytestmark = pytest.mark.ssh

PLAYBOOK = """\
- hosts: n5
  gather_facts: false
  tasks:
    - name: write a marker file
      ansible.builtin.copy:
        content: "written by ansible-playbook\\n"
        dest: "{{ marker }}"
    - name: the host is the one the inventory names
      ansible.builtin.command: hostname
      register: name
      changed_when: false
      failed_when: name.stdout != inventory_hostname
"""


def _checkout_like(root: Path, state_dir: Path, addresses: dict[str, str]) -> Path:
    """A folder laid out like the checkout: the shipped sandbox.yaml (only its hosts' addresses changed,
    its port and relative key and known_hosts paths kept) and .sandbox/ holding the running sandbox's key
    and known_hosts."""
    yaml = YAML()
    doc = yaml.load((REPO / "inventory" / "sandbox.yaml").read_text())
    for group in doc["all"]["children"].values():
        for name, host in group["hosts"].items():
            host["ansible_host"] = addresses[name]
    (root / "inventory").mkdir(parents=True)
    with (root / "inventory" / "sandbox.yaml").open("w") as fh:
        yaml.dump(doc, fh)
    (root / ".sandbox").symlink_to(state_dir)
    return root / "inventory" / "sandbox.yaml"


def test_ansible_playbook_runs_two_tasks_on_a_sandbox_host(sandbox_env, tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    addresses = {h.name: h.address for h in sandbox_env.inventory.hosts}
    inventory_path = _checkout_like(root, sandbox_env.state_dir, addresses)
    (root / "playbook.yaml").write_text(PLAYBOOK)
    marker = f"/tmp/fluxops-ansible-{secrets.token_hex(4)}"
    control = tempfile.mkdtemp(prefix="fx-cp-")  # ssh's control socket path must stay short
    env = {**ansible_env(tmp_path / "ansible"), "ANSIBLE_SSH_CONTROL_PATH_DIR": control}
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            "inventory/sandbox.yaml",
            "playbook.yaml",
            "-e",
            f"marker={marker}",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    shutil.rmtree(control, ignore_errors=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok=2" in run.stdout and "changed=1" in run.stdout and "failed=0" in run.stdout
    # fluxops reads the same file the same way (relative paths from the same root) and sees the marker
    host = inv.load(inventory_path, root=root).host("n5")
    assert (host.address, host.port) == (sandbox_env.inventory.host("n5").address, 22)
    assert (host.key_file, host.known_hosts) == (
        root / ".sandbox" / "id_ed25519",
        root / ".sandbox" / "known_hosts",
    )
    shell = RemoteShell(host)
    try:
        assert shell.run(["cat", marker]).stdout == "written by ansible-playbook\n"
        shell.run(["rm", "-f", marker])
    finally:
        shell.close()
