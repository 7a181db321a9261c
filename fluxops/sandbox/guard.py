"""What the sandbox refuses before anything starts: real addresses, a subnet that could reach them.

A sandbox host's address must be a literal IPv4 address inside the sandbox subnet (by default
10.250.0.0/24, ``fluxops.sandbox.subnet``), and the subnet must be private (RFC 1918) and hold no
address of the real inventory (``fluxops.inventory``, inventory/hosts.yaml). Loopback addresses
are refused too: a sandbox host has a network namespace of its own, and 127.x.y.z would be the
machine's.
"""

from __future__ import annotations

import ipaddress
import pwd
from collections.abc import Iterable
from ipaddress import IPv4Network
from pathlib import Path

from fluxops.errors import FluxopsError, SandboxError
from fluxops.inventory import Host
from fluxops.sandbox.network import Link, link_for
from fluxops.settings import DEFAULT_SANDBOX_SUBNET

DEFAULT_SUBNET = DEFAULT_SANDBOX_SUBNET
PRIVATE = tuple(IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
MAX_HOSTS = 100  # machine names stay short enough for interface names


def parse_subnet(value: str | IPv4Network) -> IPv4Network:
    """``value`` as an IPv4 network; SandboxError when it is not one (host bits set included)."""
    try:
        return IPv4Network(value)
    except (ValueError, TypeError) as exc:
        raise SandboxError(f"sandbox subnet {value!r} is not an IPv4 network: {exc}") from None


def check_subnet(subnet: IPv4Network, real_inventory: Path | None, *, sandbox_inventory: Path) -> None:
    """Refuse a subnet that is not private, is smaller than one /30, or holds a real host's address.

    ``real_inventory`` is the operator's inventory (its IP addresses are compared; names are not
    resolved). The sandbox inventory itself is never taken for the real one.
    """
    if not any(subnet.subnet_of(p) for p in PRIVATE):
        raise SandboxError(
            f"sandbox subnet {subnet} is not inside a private range (10.0.0.0/8, 172.16.0.0/12, "
            "192.168.0.0/16); set fluxops.sandbox.subnet to one"
        )
    if subnet.prefixlen > 30:
        raise SandboxError(f"sandbox subnet {subnet} is smaller than one /30 (each host needs one)")
    if real_inventory is None or _same_file(real_inventory, sandbox_inventory):
        return
    from fluxops import inventory as inv

    try:
        real = inv.load(real_inventory)
    except FluxopsError as exc:
        raise SandboxError(
            f"cannot read the real inventory {real_inventory} to check the sandbox subnet against it: {exc}"
        ) from None
    inside = [h for h in real.hosts if _inside(h.address, subnet)]
    if inside:
        named = ", ".join(f"{h.name} ({h.address})" for h in inside)
        raise SandboxError(
            f"sandbox subnet {subnet} holds real hosts of {real_inventory}: {named}; sandbox hosts must "
            "never share addresses with real ones: set fluxops.sandbox.subnet to another private range"
        )


def check_hosts(hosts: Iterable[Host], inventory_path: Path, subnet: IPv4Network) -> dict[str, Link]:
    """Each host's link, or SandboxError for the first host the sandbox must not start."""
    links: dict[str, Link] = {}
    networks: dict[IPv4Network, str] = {}
    for host in hosts:
        where = f"{inventory_path}: host {host.name} has address {host.address!r}"
        if host.is_loopback:
            raise SandboxError(
                f"{where}, a loopback address; a sandbox host has a network namespace of its own: give it "
                f"an address in the sandbox subnet {subnet} (ansible_host)"
            )
        if not _inside(host.address, subnet):
            raise SandboxError(
                f"{where}; sandbox hosts must be literal IPv4 addresses inside the sandbox subnet {subnet} "
                "(real hosts are never contacted from the sandbox)"
            )
        try:
            link = link_for(host.address)
        except ValueError as exc:
            raise SandboxError(f"{where}: each host gets a /30 of its own, and {exc}") from None
        if link.network in networks:
            raise SandboxError(
                f"{inventory_path}: hosts {networks[link.network]} and {host.name} share {link.network}; "
                "each sandbox host needs a /30 of its own"
            )
        if host.key_file is None or host.known_hosts is None:
            raise SandboxError(
                f"{inventory_path}: host {host.name} needs ansible_ssh_private_key_file and "
                "fluxops_known_hosts_file: the sandbox writes its client key and host keys there"
            )
        try:
            pwd.getpwnam(host.user)
        except KeyError:
            raise SandboxError(
                f"{inventory_path}: host {host.name} logs in as {host.user!r}, a user this machine does not "
                "have (a sandbox host has the machine's users)"
            ) from None
        networks[link.network] = host.name
        links[host.name] = link
    if len(links) > MAX_HOSTS:
        raise SandboxError(f"{inventory_path}: {len(links)} hosts; a sandbox runs at most {MAX_HOSTS}")
    if not links:
        raise SandboxError(f"{inventory_path}: no hosts to start")
    return links


def _inside(address: str, subnet: IPv4Network) -> bool:
    try:
        return ipaddress.ip_address(address) in subnet
    except ValueError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
