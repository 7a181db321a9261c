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
import yaml as pyyaml
from ruamel.yaml import YAML

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.layout.model import CACHE_ENV
from fluxops.sandbox import network
from fluxops.settings import DEFAULT_SANDBOX_SUBNET

REPO = Path(__file__).resolve().parent.parent
SHIPPED_SANDBOX = REPO / "inventory" / "sandbox.yaml"
REAL_INVENTORY = REPO / "inventory" / "hosts.yaml"


def configured_subnet() -> ipaddress.IPv4Network:
    """The sandbox subnet of the project's invoke.yaml (fluxops.sandbox.subnet)."""
    config = pyyaml.safe_load((REPO / "invoke.yaml").read_text()) or {}
    value = ((config.get("fluxops") or {}).get("sandbox") or {}).get("subnet")
    return ipaddress.IPv4Network(value) if value else DEFAULT_SANDBOX_SUBNET


SANDBOX_SUBNET = configured_subnet()


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
    """Skip without root, systemd-nspawn, ip or sshd - except in CI, where that fails the run."""
    problems = sandbox.capability_problems()
    if problems:
        message = "sandbox hosts unavailable: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: SSH tests are mandatory)", pytrace=False)
        pytest.skip(message)


def sandbox_addresses(count: int) -> list[str]:
    """Host addresses in ``count`` /30s of the sandbox subnet that nothing on this machine uses yet.

    The shipped inventory's /30s are left to ``invoke sandbox.up`` and ``invoke demo``.
    """
    shipped = [h.address for h in inv.load(SHIPPED_SANDBOX).hosts]
    return network.free_addresses(SANDBOX_SUBNET, count, avoid=shipped)


def write_sandbox_inventory(dest: Path, state_dir: Path, addresses: list[str], port: int = 22) -> Path:
    """The shipped sandbox.yaml with its own addresses, port, key and known_hosts paths.

    ``addresses`` go to the hosts in inventory order; a running ``invoke sandbox.up`` is untouched.
    """
    yaml = YAML()
    doc = yaml.load(SHIPPED_SANDBOX.read_text())
    all_vars = doc["all"]["vars"]
    all_vars["ansible_port"] = port
    all_vars["ansible_ssh_private_key_file"] = str(state_dir / "id_ed25519")
    known_hosts = shlex.quote(str(state_dir / "known_hosts"))
    all_vars["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
    hosts = [h for group in doc["all"]["children"].values() for h in group["hosts"].values()]
    assert len(hosts) == len(addresses), f"{len(hosts)} hosts, {len(addresses)} addresses"
    for host, address in zip(hosts, addresses, strict=True):
        host["ansible_host"] = address
    with dest.open("w") as fh:
        yaml.dump(doc, fh)
    return dest


def private_inventory(base: Path, state_dir: Path, port: int = 22) -> Path:
    """``base``/sandbox.yaml: the shipped hosts on free addresses of the sandbox subnet."""
    count = len(inv.load(SHIPPED_SANDBOX).hosts)
    return write_sandbox_inventory(base / "sandbox.yaml", state_dir, sandbox_addresses(count), port)


def sandbox_up(inventory: inv.Inventory, state_dir: Path) -> list[sandbox.HostState]:
    """``sandbox.up`` as the tasks call it: the configured subnet, checked against inventory/hosts.yaml."""
    return sandbox.up(inventory, state_dir, subnet=SANDBOX_SUBNET, real_inventory=REAL_INVENTORY)


def start_sandbox(base: Path, port: int = 22) -> SandboxEnv:
    """Sandbox hosts of the shipped inventory on free addresses, state under ``base``."""
    require_sandbox()
    state_dir = base / "state"
    path = private_inventory(base, state_dir, port)
    inventory = inv.load(path)
    sandbox_up(inventory, state_dir)
    return SandboxEnv(inventory=inventory, inventory_path=path, state_dir=state_dir)


@pytest.fixture(scope="session")
def sandbox_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEnv]:
    """Sandbox hosts (systemd, sshd, an address each) for the whole session, stopped at the end."""
    env = start_sandbox(tmp_path_factory.mktemp("sandbox"))
    try:
        yield env
    finally:
        sandbox.down(env.state_dir)


# --- network guard -----------------------------------------------------------------------------


class NetworkGuardError(RuntimeError):
    """A test reached for an address outside loopback and the sandbox subnet (not an OSError, so no
    ``except OSError`` hides it)."""


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


def in_sandbox_subnet(host: object, subnet: ipaddress.IPv4Network = SANDBOX_SUBNET) -> bool:
    """Is ``host`` a literal IPv4 address (or its IPv6-mapped form) inside the sandbox subnet?"""
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return isinstance(ip, ipaddress.IPv4Address) and ip in subnet


def guard_address(family: int, address: object) -> None:
    """Raise ``NetworkGuardError`` for an internet address outside loopback and the sandbox subnet;
    other families pass."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_loopback(host) and not in_sandbox_subnet(host):
        REFUSED.append(f"{host}")
        raise NetworkGuardError(
            f"network guard: a test tried to connect to {host!r} (address {address!r}); tests may "
            f"reach only 127.0.0.0/8, ::1 and the sandbox subnet {SANDBOX_SUBNET} (is a task using "
            "the real inventory?)"
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
    """For the whole session: a Python-level connection outside loopback and the sandbox subnet fails,
    naming the address."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _guarded_connect)
        patch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
        patch.setattr(socket, "create_connection", _guarded_create_connection)
        yield


@pytest.fixture(autouse=True)
def no_refused_connections(network_guard: None) -> Iterator[None]:
    """Fail a test whose code reached outside loopback and the sandbox subnet, even if it caught the
    guard's error."""
    REFUSED.clear()
    yield
    refused = list(REFUSED)
    REFUSED.clear()
    if refused:
        pytest.fail(f"network guard refused connections to {', '.join(refused)}", pytrace=False)
