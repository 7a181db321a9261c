"""`invoke inventory.ping` as a user runs it: one host's broken known_hosts entry fails that host alone."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fluxops import known_hosts
from fluxops.shell import local
from tests.conftest import REPO

pytestmark = pytest.mark.ssh


def test_ping_reports_every_host_when_one_host_key_is_refused(sandbox_env, tmp_path: Path) -> None:
    first, second = sandbox_env.inventory.hosts[:2]
    local().run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")])
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    first_name = known_hosts.host_name(first.address, first.port)
    second_name = known_hosts.host_name(second.address, second.port)
    second_line = next(
        line for line in second.known_hosts.read_text().splitlines() if line.split()[0] == second_name
    )
    known = tmp_path / "known_hosts"
    known.write_text(
        f"{first_name} ssh-ed25519 AAAA!!notbase64\n"
        f"@cert-authority * {other}\n"
        f"{first_name} {other}\n"
        f"{second_line}\n"
    )
    yaml = YAML()
    doc = yaml.load(sandbox_env.inventory_path.read_text())
    doc["all"]["vars"]["fluxops_known_hosts_file"] = str(known)
    inventory = tmp_path / "inventory.yaml"
    with inventory.open("w") as fh:
        yaml.dump(doc, fh)

    result = subprocess.run(
        [sys.executable, "-m", "invoke", "inventory.ping"],
        cwd=REPO,
        env={**os.environ, "INVOKE_FLUXOPS_INVENTORY": str(inventory), "COLUMNS": "1000"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split()[2]: line for line in result.stdout.splitlines() if len(line.split()) > 2}
    assert lines[second.name].startswith("ok") and "Linux" in lines[second.name]
    refused = lines[first.name]
    assert refused.startswith("FAIL") and f"does not match {known} (line 3)" in refused
    assert f" [{first.name}] the ssh-ed25519 host key of " in refused  # printed, not read as markup
    assert f"`ssh-keygen -R {shlex.quote(first_name)} -f {known}`" in refused
    target = f"{first.user}@{first.address}"
    assert first.port == 22  # ssh's default port is left out of the command
    paste = f"ssh -i {first.key_file} -o UserKnownHostsFile={known} {target}"
    assert refused.endswith(paste)
    assert f"unreachable: {first.name}" in result.stderr
    assert f"{known}:1: skipped: the key is not valid base64" in result.stderr
    assert f"{known}:2: note: @cert-authority line skipped" in result.stderr
    assert "Traceback" not in result.stderr and "Socket exception" not in result.stderr
