"""OpenSSH and fluxops side by side on the same known_hosts files: the same verdict for every case.

The oracle is the real ``ssh`` client (``StrictHostKeyChecking yes``, then ``accept-new``) against a
sandbox host; fluxops judges the same file through ``RemoteShell``. The module's own sandbox listens on
port 2222, where known_hosts names a host ``[address]:port`` and the bare address is a fallback. A
second table uses a host that holds two host keys (ed25519 and ecdsa), where the key a client asks for
first decides the verdict.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fluxops import known_hosts, sandbox
from fluxops.errors import HostKeyError
from fluxops.inventory import Host
from fluxops.shell import RemoteShell, local
from tests.conftest import SandboxEnv, start_sandbox

pytestmark = pytest.mark.ssh

CONNECT, REFUSE = True, False


@dataclass(frozen=True)
class Material:
    """What the known_hosts lines of a case are made of, for one sandbox host."""

    host: Host
    name: str  # the host as known_hosts names it: [address]:port
    key: str  # the host's real key, "type base64"
    other: str  # another ed25519 key
    ecdsa: str  # an ecdsa key that is not the host's (or is, on the two-key host)
    hashed: str  # the host's name hashed by ssh-keygen -H


@dataclass(frozen=True)
class Case:
    """One known_hosts file and the verdicts OpenSSH gives on it (strict, accept-new)."""

    label: str
    lines: Callable[[Material], list[str]]
    strict: bool
    accept_new: bool


def _tamper_byte(key: str) -> str:
    """The key with one byte of its key material flipped (still a well-formed key)."""
    key_type, data = key.split()
    raw = bytearray(base64.b64decode(data))
    raw[-5] ^= 0x01
    return f"{key_type} {base64.b64encode(bytes(raw)).decode()}"


def _damage_type(key: str) -> str:
    """The key with a character of its embedded type name changed (OpenSSH cannot read it)."""
    key_type, data = key.split()
    return f"{key_type} {data[:10]}X{data[11:]}"


CASES = [
    Case("good", lambda m: [f"{m.name} {m.key}"], CONNECT, CONNECT),
    Case("tampered byte in the key", lambda m: [f"{m.name} {_tamper_byte(m.key)}"], REFUSE, REFUSE),
    Case("damaged type inside the key data", lambda m: [f"{m.name} {_damage_type(m.key)}"], REFUSE, CONNECT),
    Case("wrong key type only", lambda m: [f"{m.name} {m.ecdsa}"], REFUSE, REFUSE),
    Case("hashed", lambda m: [f"{m.hashed} {m.key}"], CONNECT, CONNECT),
    Case(
        "old line then current line", lambda m: [f"{m.name} {m.other}", f"{m.name} {m.key}"], CONNECT, CONNECT
    ),
    Case(
        "current line then old line", lambda m: [f"{m.name} {m.key}", f"{m.name} {m.other}"], CONNECT, CONNECT
    ),
    Case("old line only", lambda m: [f"{m.name} {m.other}"], REFUSE, REFUSE),
    Case(
        "bad base64 line, then the good line",
        lambda m: [f"{m.name} ssh-ed25519 AAAA!!notbase64", f"{m.name} {m.key}"],
        CONNECT,
        CONNECT,
    ),
    Case("bad base64 line only", lambda m: [f"{m.name} ssh-ed25519 AAAA!!notbase64"], REFUSE, CONNECT),
    Case(
        "@cert-authority line, then the good line",
        lambda m: [f"@cert-authority * {m.other}", f"{m.name} {m.key}"],
        CONNECT,
        CONNECT,
    ),
    Case(
        "@cert-authority line with the host's key only",
        lambda m: [f"@cert-authority * {m.key}"],
        REFUSE,
        CONNECT,
    ),
    Case(
        "@revoked for this host's key, and the good line",
        lambda m: [f"{m.name} {m.key}", f"@revoked * {m.key}"],
        REFUSE,
        REFUSE,
    ),
    Case("@revoked for this host's key only", lambda m: [f"@revoked {m.name} {m.key}"], REFUSE, REFUSE),
    Case(
        "@revoked for another key, then the good line",
        lambda m: [f"@revoked * {m.other}", f"{m.name} {m.key}"],
        CONNECT,
        CONNECT,
    ),
    Case(
        "@revoked for this key under another host's name, and the good line",
        lambda m: [f"@revoked [10.9.9.9]:22 {m.key}", f"{m.name} {m.key}"],
        CONNECT,
        CONNECT,
    ),
    Case(
        "marker followed by a tab (OpenSSH skips the line), and the good line",
        lambda m: [f"@revoked\t* {m.key}", f"{m.name} {m.key}"],
        CONNECT,
        CONNECT,
    ),
    Case("unknown marker only", lambda m: [f"@trusted {m.name} {m.key}"], REFUSE, CONNECT),
    Case(
        "wildcard",
        lambda m: [f"[{m.host.address.rsplit('.', 1)[0]}.*]:{m.host.port} {m.key}"],
        CONNECT,
        CONNECT,
    ),
    Case(
        "negated in a wildcard list",
        lambda m: [f"[{m.host.address.rsplit('.', 1)[0]}.*]:*,!{m.name} {m.key}"],
        REFUSE,
        CONNECT,
    ),
    Case("comma list", lambda m: [f"NODE.example.org,{m.name} {m.key}"], CONNECT, CONNECT),
    Case("address without the port", lambda m: [f"{m.host.address} {m.key}"], CONNECT, CONNECT),
    Case("address without the port, another key", lambda m: [f"{m.host.address} {m.other}"], REFUSE, CONNECT),
    Case(
        "old key with the port, current key without",
        lambda m: [f"{m.name} {m.other}", f"{m.host.address} {m.key}"],
        REFUSE,
        REFUSE,
    ),
    Case(
        "comments, blank lines, indentation, CRLF",
        lambda m: ["# hosts", "", f" \t{m.name} {m.other} an old key\r", f" \t{m.name} {m.key}\r", "\r"],
        CONNECT,
        CONNECT,
    ),
    Case("empty file", lambda m: [], REFUSE, CONNECT),
]

# on a host that holds an ed25519 and an ecdsa key (m.ecdsa is then the host's own ecdsa key)
TWO_KEY_CASES = [
    Case("ecdsa line only", lambda m: [f"{m.name} {m.ecdsa}"], CONNECT, CONNECT),
    Case(
        "ecdsa line, then ed25519 line",
        lambda m: [f"{m.name} {m.ecdsa}", f"{m.name} {m.key}"],
        CONNECT,
        CONNECT,
    ),
    Case(
        "old ed25519 line, current ecdsa line",
        lambda m: [f"{m.name} {m.other}", f"{m.name} {m.ecdsa}"],
        REFUSE,
        REFUSE,
    ),
    Case(
        "@revoked ed25519 key, current ecdsa line",
        lambda m: [f"@revoked * {m.key}", f"{m.name} {m.ecdsa}"],
        CONNECT,
        CONNECT,
    ),
]


def _public_key(path: Path) -> str:
    return " ".join(path.read_text().split()[:2])


def _material(host: Host, folder: Path, ecdsa: str | None = None) -> Material:
    name = known_hosts.host_name(host.address, host.port)
    assert host.known_hosts is not None
    key = next(
        " ".join(line.split()[1:3])
        for line in host.known_hosts.read_text().splitlines()
        if line.split() and line.split()[0] == name
    )
    for kind in ("ed25519", "ecdsa"):
        local().run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(folder / kind)])
    hashed_file = folder / "hashed"
    hashed_file.write_text(f"{name} {key}\n")
    local().run(["ssh-keygen", "-q", "-H", "-f", str(hashed_file)])
    hashed = hashed_file.read_text().split()[0]
    assert hashed.startswith("|1|")
    return Material(
        host=host,
        name=name,
        key=key,
        other=_public_key(folder / "ed25519.pub"),
        ecdsa=ecdsa or _public_key(folder / "ecdsa.pub"),
        hashed=hashed,
    )


def openssh_connects(host: Host, known: Path, mode: str, home: Path) -> bool:
    """Does plain OpenSSH ssh reach the host with this known_hosts (StrictHostKeyChecking=mode)?"""
    home.mkdir(exist_ok=True)
    options = {
        "UserKnownHostsFile": known,
        "StrictHostKeyChecking": mode,
        "BatchMode": "yes",
        "GlobalKnownHostsFile": "/dev/null",
    }
    argv = ["ssh", "-F", "/dev/null", *(f"-o{k}={v}" for k, v in options.items())]
    argv += ["-i", str(host.key_file), "-p", str(host.port), f"{host.user}@{host.address}", "true"]
    result = local().run(argv, env={"HOME": str(home)}, check=False, timeout=30)
    if result.rc == 0:
        return True
    assert "Host key verification failed" in result.stderr, result.stderr  # refused for its key, nothing else
    return False


def fluxops_connects(host: Host, known: Path, mode: str) -> bool:
    """Does fluxops reach the host with this known_hosts (accept-new when ``mode`` says so)?"""
    shell = RemoteShell(
        dataclasses.replace(host, known_hosts=known), accept_new_host_key=mode == "accept-new"
    )
    try:
        shell.run(["true"], timeout=30)
    except HostKeyError:
        return False
    finally:
        shell.close()
    return True


def compare(material: Material, case: Case, mode: str, folder: Path) -> None:
    """Both clients on copies of the case's file: the same verdict, the expected one, the same recording."""
    text = "".join(f"{line}\n" for line in case.lines(material))
    files = {}
    for tool in ("openssh", "fluxops"):
        files[tool] = folder / f"{tool}_known_hosts"
        files[tool].write_text(text)
    theirs = openssh_connects(material.host, files["openssh"], mode, folder / "home")
    ours = fluxops_connects(material.host, files["fluxops"], mode)
    verdict = {True: "connects", False: "refuses"}
    assert ours == theirs, f"{case.label} ({mode}): OpenSSH {verdict[theirs]}, fluxops {verdict[ours]}"
    expected = case.strict if mode == "yes" else case.accept_new
    assert theirs == expected, f"{case.label} ({mode}): the table says OpenSSH {verdict[expected]}"
    recorded = {tool: path.read_text() != text for tool, path in files.items()}
    assert recorded["fluxops"] == recorded["openssh"], f"{case.label}: recorded {recorded}"
    if recorded["fluxops"]:  # what fluxops writes, OpenSSH reads
        check = folder / "recorded_known_hosts"
        shutil.copy(files["fluxops"], check)
        assert openssh_connects(material.host, check, "yes", folder / "home")


PORT = 2222


@pytest.fixture(scope="module")
def port_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEnv]:
    """This module's sandbox: the shipped hosts with sshd on port 2222."""
    env = start_sandbox(tmp_path_factory.mktemp("port_sandbox"), port=PORT)
    try:
        yield env
    finally:
        sandbox.down(env.state_dir)


@pytest.fixture(scope="module")
def material(port_sandbox: SandboxEnv, tmp_path_factory: pytest.TempPathFactory) -> Material:
    host = port_sandbox.inventory.hosts[1]
    assert host.port == PORT and known_hosts.host_name(host.address, host.port).startswith("[")
    return _material(host, tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize("mode", ["yes", "accept-new"])
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_same_verdict_as_openssh(material: Material, case: Case, mode: str, tmp_path: Path) -> None:
    compare(material, case, mode, tmp_path)


# --- a host with two host keys -----------------------------------------------------------------


def _wait_for_key(host: Host, key_type: str, timeout: float = 10.0) -> str:
    """The host's key of ``key_type`` as ssh-keyscan sees it, once sshd offers it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scan = local().run(
            ["ssh-keyscan", "-t", key_type, "-p", str(host.port), host.address], check=False, timeout=10
        )
        lines = [line for line in scan.stdout.splitlines() if line and not line.startswith("#")]
        if lines:
            return " ".join(lines[0].split()[1:3])
        time.sleep(0.1)
    raise AssertionError(f"sshd of {host.name} does not offer an {key_type} key")


@pytest.fixture(scope="module")
def two_key_material(port_sandbox: SandboxEnv, tmp_path_factory: pytest.TempPathFactory) -> Material:
    """The module sandbox's first host, its sshd given an ecdsa key besides its ed25519 one."""
    base = tmp_path_factory.mktemp("two_keys")
    host = port_sandbox.inventory.hosts[0]
    key = "/etc/ssh/ssh_host_ecdsa_key"  # the machine's own key of that name is hidden in the host
    shell = RemoteShell(host)
    try:
        assert shell.run(["test", "-e", key], check=False).rc == 1
        shell.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", key])
        shell.run(["sh", "-c", 'echo "HostKey $1" >> "$2"', "sh", key, sandbox.SSHD_DROPIN])
        shell.run(["systemctl", "reload", "ssh"])  # sshd -t, then SIGHUP to the service's main PID
    finally:
        shell.close()
    return _material(host, base, ecdsa=_wait_for_key(host, "ecdsa"))


@pytest.mark.parametrize("mode", ["yes", "accept-new"])
@pytest.mark.parametrize("case", TWO_KEY_CASES, ids=[c.label for c in TWO_KEY_CASES])
def test_same_verdict_as_openssh_on_a_host_with_two_keys(
    two_key_material: Material, case: Case, mode: str, tmp_path: Path
) -> None:
    compare(two_key_material, case, mode, tmp_path)
