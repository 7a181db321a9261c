"""The test set-up's network guard: nothing but loopback, the sandbox subnet (and Unix sockets) is
reachable from a test."""

from __future__ import annotations

import _socket
import errno
import ipaddress
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REFUSED, REPO, SANDBOX_SUBNET, NetworkGuardError, configured_subnet, guard_address

OUTSIDE = ("192.0.2.1", 9)  # TEST-NET-1: never routed; the guard must stop it before any packet


def _require_guard() -> None:
    """Fail (rather than send a packet) when the guard is not installed."""
    assert socket.socket.connect is not _socket.socket.connect, "network guard is not installed"
    assert socket.socket.connect_ex is not _socket.socket.connect_ex, "network guard is not installed"


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()


def test_outside_loopback_is_refused_before_any_connect(listener: tuple[str, int]) -> None:
    _require_guard()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        with pytest.raises(NetworkGuardError, match=r"192\.0\.2\.1"):
            sock.connect(OUTSIDE)
        with pytest.raises(NetworkGuardError, match=r"192\.0\.2\.1"):
            sock.connect_ex(OUTSIDE)
        with pytest.raises(OSError) as unconnected:
            sock.getpeername()
        assert unconnected.value.errno == errno.ENOTCONN
        # A started connect would leave the socket in progress (EALREADY); this one is still fresh.
        sock.setblocking(True)
        sock.connect(listener)
        assert sock.getpeername() == listener
    finally:
        sock.close()
    with pytest.raises(NetworkGuardError, match=r"192\.0\.2\.1"):
        socket.create_connection(OUTSIDE, timeout=0.01)
    assert REFUSED == ["192.0.2.1"] * 3
    REFUSED.clear()


def test_names_other_than_localhost_are_refused_unresolved() -> None:
    _require_guard()
    with pytest.raises(NetworkGuardError, match=r"n5\.example\.invalid"):
        socket.create_connection(("n5.example.invalid", 22), timeout=0.01)
    REFUSED.clear()


def test_loopback_and_unix_sockets_are_allowed(listener: tuple[str, int], tmp_path: Path) -> None:
    _require_guard()
    with socket.create_connection(listener, timeout=2) as conn:
        assert conn.getpeername() == listener
    with socket.socket() as sock:
        assert sock.connect_ex(listener) == 0
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        server.bind(path)
        server.listen()
        client.connect(path)
    assert REFUSED == []


@pytest.mark.parametrize(
    ("family", "address", "allowed"),
    [
        (socket.AF_INET, ("127.0.0.2", 2222), True),
        (socket.AF_INET, ("localhost", 22), True),
        (socket.AF_INET6, ("::1", 22, 0, 0), True),
        (socket.AF_INET6, ("::ffff:127.0.0.3", 22, 0, 0), True),
        (socket.AF_INET, ("10.250.0.2", 22), True),
        (socket.AF_INET, ("10.250.0.255", 22), True),
        (socket.AF_INET6, ("::ffff:10.250.0.6", 22, 0, 0), True),
        (socket.AF_INET, ("10.250.1.2", 22), False),
        (socket.AF_INET, ("10.249.255.254", 22), False),
        (socket.AF_INET, ("10.0.0.1", 22), False),
        (socket.AF_INET, ("10.250.0.2.example.invalid", 22), False),
        (socket.AF_INET, ("192.168.8.5", 22), False),
        (socket.AF_INET, ("85.31.234.30", 22), False),
        (socket.AF_INET6, ("2001:db8::1", 22, 0, 0), False),
        (socket.AF_INET6, ("::ffff:192.0.2.1", 22, 0, 0), False),
    ],
)
def test_which_addresses_pass(family: int, address: tuple[object, ...], allowed: bool) -> None:
    if allowed:
        guard_address(family, address)
    else:
        with pytest.raises(NetworkGuardError, match=re.escape(str(address[0]))):
            guard_address(family, address)
        assert [address[0]] == REFUSED
        REFUSED.clear()


def test_the_guard_allows_exactly_the_configured_sandbox_subnet() -> None:
    _require_guard()
    assert SANDBOX_SUBNET == configured_subnet() == ipaddress.IPv4Network("10.250.0.0/24")
    guard_address(socket.AF_INET, (str(SANDBOX_SUBNET.network_address), 22))
    guard_address(socket.AF_INET, (str(SANDBOX_SUBNET.broadcast_address), 22))
    for outside in (SANDBOX_SUBNET.network_address - 1, SANDBOX_SUBNET.broadcast_address + 1):
        with pytest.raises(
            NetworkGuardError, match=rf"{re.escape(str(outside))}.*sandbox subnet 10\.250\.0\.0/24"
        ):
            guard_address(socket.AF_INET, (str(outside), 22))
    assert [str(SANDBOX_SUBNET.network_address - 1), str(SANDBOX_SUBNET.broadcast_address + 1)] == REFUSED
    REFUSED.clear()


def test_a_test_that_swallows_the_refusal_still_fails(tmp_path: Path) -> None:
    test = tmp_path / "test_swallow.py"
    test.write_text(
        "import socket\n\n\ndef test_swallow():\n    try:\n"
        "        socket.create_connection(('192.0.2.1', 9), timeout=0.01)\n"
        "    except Exception:\n        pass\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.conftest",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            "-p",
            "no:cacheprovider",
            str(test),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "network guard refused connections to 192.0.2.1" in result.stdout
