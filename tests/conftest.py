"""Shared fixtures: keep every test away from the developer's real home, keys and SSH config."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fluxops import inventory as inv
from fluxops import sandbox

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $HOME and XDG dirs per test; no SOPS key from the environment leaks in."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for var in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY_CMD", "SOPS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    for var in [v for v in os.environ if v.startswith("INVOKE_FLUXOPS")]:
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def repo_root() -> Path:
    """The checkout under test."""
    return REPO


# --- sandbox hosts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxEnv:
    """Running sandbox hosts of one test session: their inventory and state."""

    inventory: inv.Inventory
    inventory_path: Path
    state_dir: Path

    @property
    def ssh_config(self) -> Path:
        return sandbox.ssh_config_path(self.state_dir)


def require_sandbox() -> None:
    """Skip without root/unshare/sshd - except in CI, where that fails the run."""
    problems = sandbox.capability_problems()
    if problems:
        message = "sandbox hosts unavailable: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: SSH tests are mandatory)", pytrace=False)
        pytest.skip(message)


def free_port(addresses: list[str]) -> int:
    """A TCP port free on every one of ``addresses``."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        if all(_bindable(a, port) for a in addresses):
            return port
    raise RuntimeError("no free port on the sandbox addresses")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def write_sandbox_inventory(dest: Path, state_dir: Path, port: int) -> Path:
    """The shipped sandbox.yaml with its own port and key paths, so a running demo is untouched."""
    yaml = YAML()
    doc = yaml.load((REPO / "inventory" / "sandbox.yaml").read_text())
    all_vars = doc["all"]["vars"]
    all_vars["ansible_port"] = port
    all_vars["ansible_ssh_private_key_file"] = str(state_dir / "id_ed25519")
    all_vars["fluxops_known_hosts_file"] = str(state_dir / "known_hosts")
    with dest.open("w") as fh:
        yaml.dump(doc, fh)
    return dest


def start_sandbox(base: Path) -> SandboxEnv:
    """Sandbox hosts of the shipped inventory on a free port, state under ``base``."""
    require_sandbox()
    shipped = inv.load(REPO / "inventory" / "sandbox.yaml")
    port = free_port([h.address for h in shipped.hosts])
    state_dir = base / "state"
    path = write_sandbox_inventory(base / "sandbox.yaml", state_dir, port)
    inventory = inv.load(path)
    sandbox.up(inventory, state_dir)
    return SandboxEnv(inventory=inventory, inventory_path=path, state_dir=state_dir)


@pytest.fixture(scope="session")
def sandbox_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEnv]:
    """Sandbox hosts (real sshd) for the whole session, stopped at the end."""
    env = start_sandbox(tmp_path_factory.mktemp("sandbox"))
    try:
        yield env
    finally:
        sandbox.down(env.state_dir)
