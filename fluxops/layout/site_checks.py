"""Site values that contradict each other: LB IPs outside the pools, foreign node pins, shared owner ids."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Collection, Mapping
from pathlib import Path

import yaml

from fluxops.errors import FluxopsError
from fluxops.layout.findings import Findings, listing
from fluxops.layout.site_values import SiteValue, address_range, in_ranges, read_site_values
from fluxops.layout.tree import Tree, load

INVOKE_FILE = "invoke.yaml"
INVENTORY_ENV = "INVOKE_FLUXOPS_INVENTORY"  # invoke's environment override of fluxops.inventory


def inventory_hosts(root: Path) -> tuple[dict[str, set[str]] | None, str]:
    """Host names per cluster from the inventory ``root/invoke.yaml`` names, and that inventory's path.

    (None, why) when there is no inventory to read: no invoke.yaml or no ``fluxops.inventory`` in it,
    or a file that is not there. An inventory that does not load raises FluxopsError.
    """
    from fluxops import inventory

    config_file = root / INVOKE_FILE
    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file.is_file() else None
    except (OSError, yaml.YAMLError) as exc:
        return None, f"{INVOKE_FILE} does not read: {exc}"
    section = (config or {}).get("fluxops") if isinstance(config, dict) else None
    section = section if isinstance(section, dict) else {}
    name = os.environ.get(INVENTORY_ENV) or section.get("inventory")
    if not isinstance(name, str) or not name:
        return None, f"no fluxops.inventory in {INVOKE_FILE}"
    path = Path(name).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        return None, f"the inventory {name} is not there"
    groups = section.get("clusters") if isinstance(section.get("clusters"), dict) else None
    loaded = inventory.load(path, clusters=groups or None, root=root)
    hosts = {c.name: {h.name for h in c.hosts} for c in loaded.clusters.values()}
    return hosts, name


def check_site_values(
    tree: Tree,
    findings: Findings,
    hosts_by_cluster: Mapping[str, Collection[str]] | None = None,
    inventory_name: str = "the inventory",
) -> None:
    """Flag site values that contradict one another (see docs/site-values.md).

    ``hosts_by_cluster`` (cluster -> inventory host names) checks node pins; without it the
    inventory named by ``invoke.yaml`` at the tree's root is read when there is one, else pins are
    not checked.
    """
    values = {name: read_site_values(tree, c) for name, c in tree.clusters.items()}
    if hosts_by_cluster is None:
        try:
            hosts, inventory_name = inventory_hosts(tree.repo.root)
        except FluxopsError as exc:
            findings.warning("node-pin", f"node pins not checked: the inventory does not load: {exc}")
            hosts = None
        hosts_by_cluster = hosts
    for name, found in values.items():
        _check_pools(found, findings)
        if hosts_by_cluster is not None:
            _check_pins(name, found, hosts_by_cluster, inventory_name, findings)
    _check_owners(tree, values, findings)


def _check_pools(found: list[SiteValue], findings: Findings) -> None:
    """Each LoadBalancer IP inside one of the cluster's IPAddressPools (when it has any)."""
    pools = [v for v in found if v.field == "address_pool"]
    ranges = []
    for pool in pools:
        try:
            ranges.append(address_range(pool.value))
        except ValueError as exc:
            findings.error(
                "address-pool",
                f"{pool.object}: pool entry {pool.value!r} is not an address, CIDR or range: {exc}",
                **pool.where,
            )
    if not pools:
        return
    listed = listing(f"{p.value} at {p.at}" for p in pools)
    for lb in (v for v in found if v.field == "lb_ips"):
        try:
            ip = ipaddress.ip_address(lb.value)
        except ValueError:
            findings.error(
                "lb-ip", f"{lb.object}: LoadBalancer IP {lb.value!r} is not an IP address", **lb.where
            )
            continue
        if not in_ranges(ip, ranges):
            findings.error(
                "lb-ip-outside-pool",
                f"{lb.object}: LoadBalancer IP {lb.value} is in no IPAddressPool of cluster {lb.cluster} "
                f"({listed}); take an address from the pool or widen the pool",
                **lb.where,
            )


def _check_pins(
    cluster: str,
    found: list[SiteValue],
    hosts_by_cluster: Mapping[str, Collection[str]],
    inventory_name: str,
    findings: Findings,
) -> None:
    """Each node a workload is pinned to is a host of the cluster's inventory group."""
    pins = [v for v in found if v.field == "node_names"]
    if not pins:
        return
    if cluster not in hosts_by_cluster:
        first = pins[0]
        findings.warning(
            "node-pin",
            f"cluster {cluster} has no group in {inventory_name}, so its node pins "
            f"({', '.join(sorted({p.value for p in pins}))}) are not checked; add its hosts to the inventory",
            **first.where,
        )
        return
    hosts = sorted(hosts_by_cluster[cluster])
    for pin in pins:
        if pin.value not in hosts:
            findings.error(
                "node-pin",
                f"{pin.object} is pinned to node {pin.value}, which is not a host of cluster {cluster} in "
                f"{inventory_name} (hosts: {', '.join(hosts) or 'none'}); pin it to one of them or drop "
                "the pin",
                **pin.where,
            )


def _check_owners(tree: Tree, values: dict[str, list[SiteValue]], findings: Findings) -> None:
    """No two clusters with the same external-dns owner id (each would delete the other's records)."""
    owners = {name: [v for v in found if v.field == "external_dns_owner"] for name, found in values.items()}
    if tree.only is not None:
        others = [n for n in tree.discovered if n not in owners]
        for name in others:
            other = load(tree.repo.root, name)
            owners[name] = [
                v for v in read_site_values(other, other.clusters[name]) if v.field == "external_dns_owner"
            ]
    by_value: dict[str, list[SiteValue]] = {}
    for found in owners.values():
        for owner in found:
            by_value.setdefault(owner.value, []).append(owner)
    for value, same in by_value.items():
        clusters = sorted({o.cluster for o in same})
        if len(clusters) < 2:
            continue
        for owner in (o for o in same if o.cluster in values):
            elsewhere = listing(f"{o.cluster} ({o.at})" for o in same if o.cluster != owner.cluster)
            findings.error(
                "external-dns-owner",
                f"{owner.object}: external-dns owner id {value!r} is also the one of {elsewhere}; two "
                "clusters with one owner id take over (and delete) each other's DNS records: give each "
                "cluster its own txtOwnerId",
                **owner.where,
            )
