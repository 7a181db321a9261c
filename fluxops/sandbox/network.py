"""The sandbox's own network: one /30 per host, a veth pair, and a fence route for each /30.

A host with address A lives in the /30 that holds A: A is its address inside its network namespace
(on ``host0``), the other usable address of that /30 is the machine's, on the veth
``ve-<machine name>`` that systemd-nspawn creates. The machine gets nothing else: no forwarding, no
NAT, no route besides the ones below.

For each /30, ``up`` first adds ``unreachable <net> metric 4242`` (the fence): while the veth is up,
the kernel's own route for the /30 (metric 0) wins; when the veth is down or gone, the fence answers
"no route to host" at once, so a packet for a sandbox address never follows the machine's default
route out. The fence is also how runs claim addresses: under a machine-wide lock, ``up`` refuses a
/30 that overlaps any address or route the machine already has (another run's fence included),
then adds its fences.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from fluxops.errors import SandboxError
from fluxops.shell import local

FENCE_METRIC = 4242
LOCK_FILE = Path("/run/fluxops-sandbox-network.lock")
LOCK_TIMEOUT = 30.0
VETH_PREFIX = "ve-"
IFNAMSIZ = 15  # longest interface name the kernel takes


@dataclass(frozen=True)
class Link:
    """A host's /30: its own address and the machine's address on the veth."""

    network: IPv4Network
    address: IPv4Address
    machine_address: IPv4Address


def link_for(address: str) -> Link:
    """The /30 of ``address``; ValueError when it is that /30's network or broadcast address."""
    ip = IPv4Address(address)
    network = IPv4Network(f"{ip}/30", strict=False)
    first, second = network[1], network[2]
    if ip not in (first, second):
        raise ValueError(f"{ip} is the network or broadcast address of {network}; use {first} or {second}")
    return Link(network=network, address=ip, machine_address=second if ip == first else first)


def veth_name(machine: str) -> str:
    """The machine's end of the veth pair systemd-nspawn creates for ``machine``."""
    name = VETH_PREFIX + machine
    if len(name) > IFNAMSIZ:
        raise SandboxError(f"machine name {machine!r} is too long for an interface name ({name})")
    return name


def _ip_json(*args: str) -> list[dict[str, object]]:
    result = local().run(["ip", "-j", *args], timeout=10)
    return json.loads(result.stdout or "[]")


def machine_networks() -> list[tuple[IPv4Network, str]]:
    """Every IPv4 network this machine has an address in or a route to (the default route aside)."""
    found: list[tuple[IPv4Network, str]] = []
    for link in _ip_json("-4", "addr", "show"):
        for info in link.get("addr_info", []):  # type: ignore[union-attr]
            cidr = f"{info['local']}/{info['prefixlen']}"
            found.append((IPv4Network(cidr, strict=False), f"address {cidr} on {link['ifname']}"))
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst = str(route.get("dst", ""))
        if dst in ("", "default"):
            continue
        kind = route.get("type", "unicast")
        where = f" dev {route['dev']}" if "dev" in route else ""
        table = f" table {route['table']}" if "table" in route else ""
        metric = f" metric {route['metric']}" if "metric" in route else ""
        found.append((IPv4Network(dst, strict=False), f"route {kind} {dst}{where}{table}{metric}"))
    return found


def conflicts(networks: dict[str, IPv4Network]) -> list[str]:
    """For each host whose /30 overlaps something of the machine's: what it overlaps."""
    present = machine_networks()
    problems = []
    for name, network in networks.items():
        clashes = sorted({what for net, what in present if net.overlaps(network)})
        if clashes:
            problems.append(f"{network} of host {name} overlaps {'; '.join(clashes)}")
    return problems


def refuse_conflicts(networks: dict[str, IPv4Network]) -> None:
    """SandboxError when any host's /30 is already in use on this machine."""
    problems = conflicts(networks)
    if problems:
        raise SandboxError(
            "sandbox addresses already in use on this machine (another sandbox running, or the "
            "machine's own network): " + "; ".join(problems) + ". Stop that sandbox (sandbox.down), or give "
            "the hosts other addresses in the sandbox subnet (ansible_host), or choose another "
            "fluxops.sandbox.subnet"
        )


@contextlib.contextmanager
def claim_lock(timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the machine-wide lock under which runs check and claim their /30s."""
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SandboxError(
                        f"{LOCK_FILE} stayed locked for {timeout:.0f}s (another sandbox.up?)"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def add_fence(network: IPv4Network) -> None:
    """Add the `unreachable` route of ``network`` (never replacing an existing route)."""
    argv = ["ip", "-4", "route", "add", "unreachable", str(network), "metric", str(FENCE_METRIC)]
    local().run(argv, timeout=10)


def fence_exists(network: IPv4Network) -> bool:
    """Is the fence route of ``network`` in the main table?"""
    routes = _ip_json("-4", "route", "show", "type", "unreachable", "exact", str(network))
    return any(r.get("metric") == FENCE_METRIC for r in routes)


def remove_fence(network: IPv4Network) -> bool:
    """Delete exactly the fence route of ``network``; False when it was not there."""
    if not fence_exists(network):
        return False
    argv = ["ip", "-4", "route", "del", "unreachable", str(network), "metric", str(FENCE_METRIC)]
    local().run(argv, timeout=10)
    return True


def interface_exists(name: str) -> bool:
    """Does this machine have an interface called ``name``?"""
    return Path("/sys/class/net", name).exists()


def is_veth(name: str) -> bool:
    """Is ``name`` a veth interface (never a physical one or a bridge)?"""
    result = local().run(["ip", "-j", "-d", "link", "show", "dev", name], check=False, timeout=10)
    if result.rc != 0:
        return False
    links = json.loads(result.stdout or "[]")
    return any(link.get("linkinfo", {}).get("info_kind") == "veth" for link in links)


def configure(veth: str, link: Link) -> None:
    """Give the machine's end of a host's veth its address and bring it up."""
    cidr = f"{link.machine_address}/{link.network.prefixlen}"
    local().run(["ip", "-4", "addr", "add", cidr, "dev", veth], timeout=10)
    set_link(veth, up=True)


def set_link(veth: str, *, up: bool) -> None:
    """Set a host's veth up or down from the machine (down: the host drops off the network)."""
    local().run(["ip", "link", "set", "dev", veth, "up" if up else "down"], timeout=10)


def delete_veth(name: str) -> bool:
    """Delete the veth called ``name`` if it still exists (normally it goes with its container)."""
    if not interface_exists(name) or not is_veth(name):
        return False
    local().run(["ip", "link", "delete", "dev", name], check=False, timeout=10)
    return not interface_exists(name)


def free_addresses(
    subnet: IPv4Network, count: int, *, avoid: Iterable[str] = (), rng: random.Random | None = None
) -> list[str]:
    """``count`` host addresses in distinct /30s of ``subnet`` that nothing on the machine uses yet.

    The /30s of ``avoid`` are left out; the rest are picked at random, so runs started at once
    rarely try the same ones (``up`` refuses a /30 in use all the same).
    """
    taken = [net for net, _ in machine_networks()]
    taken += [IPv4Network(f"{a}/30", strict=False) for a in avoid]
    free = [
        net
        for net in subnet.subnets(new_prefix=30)
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0)
    ]
    if len(free) < count:
        raise SandboxError(f"only {len(free)} free /30 networks left in {subnet}, {count} needed")
    picked = (rng or random.SystemRandom()).sample(free, count)
    return [str(net[2]) for net in picked]
