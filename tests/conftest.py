"""Shared fixtures: keep every test away from the developer's real home, keys and SSH config."""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.layout.model import CACHE_ENV

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
    # layout builds of the checkout are cached outside it (one warm cache per test process)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "fluxops-cache"))
    return home


@pytest.fixture(scope="session", autouse=True)
def checkout_stays_clean() -> Iterator[None]:
    """No test writes fluxops state (caches, staging copies, locks) into the checkout."""
    state = REPO / ".fluxops"
    existed = state.exists()
    yield
    assert existed or not state.exists(), f"a test wrote {state}; point it at a temporary folder"


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
    """The shipped sandbox.yaml with its own port, key and known_hosts paths (a running demo is untouched)."""
    yaml = YAML()
    doc = yaml.load((REPO / "inventory" / "sandbox.yaml").read_text())
    all_vars = doc["all"]["vars"]
    all_vars["ansible_port"] = port
    all_vars["ansible_ssh_private_key_file"] = str(state_dir / "id_ed25519")
    known_hosts = shlex.quote(str(state_dir / "known_hosts"))
    all_vars["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
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


# --- network guard -----------------------------------------------------------------------------


class NetworkGuardError(RuntimeError):
    """A test reached for an address outside loopback (not an OSError, so no ``except OSError`` hides it)."""


# Every refused address of the current test; a test that swallowed the error still fails.
REFUSED: list[str] = []
_REAL_CONNECT = socket.socket.connect
_REAL_CONNECT_EX = socket.socket.connect_ex
_REAL_CREATE_CONNECTION = socket.create_connection


def is_loopback(host: object) -> bool:
    """Is ``host`` a literal 127.0.0.0/8 or ::1 address (or ``localhost``)? Names are never resolved."""
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def guard_address(family: int, address: object) -> None:
    """Raise ``NetworkGuardError`` for an internet address outside loopback; other families pass."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_loopback(host):
        REFUSED.append(f"{host}")
        raise NetworkGuardError(
            f"network guard: a test tried to connect to {host!r} (address {address!r}); tests may "
            "reach only 127.0.0.0/8 and ::1 (is a task using the real inventory?)"
        )


def _guarded_connect(self: socket.socket, address: object) -> None:
    guard_address(self.family, address)
    return _REAL_CONNECT(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    guard_address(self.family, address)
    return _REAL_CONNECT_EX(self, address)


def _guarded_create_connection(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
    guard_address(socket.AF_INET, address)
    return _REAL_CREATE_CONNECTION(address, *args, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def network_guard() -> Iterator[None]:
    """For the whole session: a Python-level connection outside loopback fails, naming the address."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _guarded_connect)
        patch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
        patch.setattr(socket, "create_connection", _guarded_create_connection)
        yield


@pytest.fixture(autouse=True)
def no_refused_connections(network_guard: None) -> Iterator[None]:
    """Fail a test whose code reached outside loopback, even if it caught the guard's error."""
    REFUSED.clear()
    yield
    refused = list(REFUSED)
    REFUSED.clear()
    if refused:
        pytest.fail(f"network guard refused connections to {', '.join(refused)}", pytrace=False)
