"""A cluster's site values: what differs from site to site, found in the objects Flux applies.

Six fields (see docs/site-values.md). Each is found by kind and path in the built objects, chart
values included (a HelmRelease's ``valuesFrom`` ConfigMaps merged under its ``spec.values``, as
helm-controller merges them), and located back to the file and line that sets it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fluxops.errors import LayoutError
from fluxops.layout.locate import label, where
from fluxops.layout.merge import dig, merge_maps
from fluxops.layout.model import Cluster, Phase, meta
from fluxops.layout.sources import YamlSyntaxError, line_of, load_all
from fluxops.layout.tree import Tree

HOSTNAME_LABEL = "kubernetes.io/hostname"
LB_ANNOTATIONS = (
    "metallb.universe.tf/loadBalancerIPs",
    "metallb.io/loadBalancerIPs",
    "kube-vip.io/loadbalancerIPs",
)
# A hostname label or expression is a node pin only below one of these keys.
NODE_CONTEXT = frozenset(
    {"nodeSelector", "nodeSelectors", "nodeAffinity", "nodeSelectorTerms", "allowedTopologies"}
)
STORAGE_POOL_PARAMETERS = ("poolname", "volgroup")  # OpenEBS ZFS and LVM StorageClasses
OWNER_ARG, DOMAIN_ARG = "--txt-owner-id=", "--domain-filter="
NOT_WALKED = frozenset({"CustomResourceDefinition", "ConfigMap", "Secret"})
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
NO_SPACE = re.compile(r"^\S+$")
Found = tuple[str, str, tuple[Any, ...]]  # field, value, path inside the object


@dataclass(frozen=True)
class SiteField:
    """One kind of site value: its name, the new-cluster option that sets it, how to name it."""

    name: str
    option: str
    what: str


FIELDS: dict[str, SiteField] = {
    f.name: f
    for f in (
        SiteField("address_pool", "--address", "MetalLB IPAddressPool address"),
        SiteField("lb_ips", "--lb-ip", "LoadBalancer IP"),
        SiteField("node_names", "--node", "node name (pin)"),
        SiteField("external_dns_owner", "--owner-id", "external-dns owner id (txtOwnerId)"),
        SiteField("domains", "--domain", "external-dns domain filter"),
        SiteField("storage_pools", "--storage-pool", "storage pool (StorageClass poolname/volgroup)"),
    )
}


@dataclass(frozen=True)
class SiteValue:
    """One site value of a cluster: which field, the value, the object it is in, where it is set."""

    field: str
    value: str
    cluster: str
    phase: str
    object: str
    file: str
    line: int | None

    @property
    def at(self) -> str:
        """``file:line`` for messages."""
        return f"{self.file}:{self.line}" if self.line else self.file

    @property
    def where(self) -> dict[str, Any]:
        """Location keywords for a finding about this value."""
        return {"cluster": self.cluster, "phase": self.phase, "file": self.file, "line": self.line}


# --- finding the fields in an object -------------------------------------------------------------


def _mapping_values(node: dict[str, Any], path: tuple[Any, ...]) -> Iterator[Found]:
    """Site values held directly by one mapping (``path`` is where the mapping is)."""
    for key in ("loadBalancerIP", *LB_ANNOTATIONS):
        if isinstance(node.get(key), str):
            for ip in node[key].split(","):
                if ip.strip():
                    yield "lb_ips", ip.strip(), (*path, key)
    if isinstance(node.get("txtOwnerId"), str) and node["txtOwnerId"]:
        yield "external_dns_owner", node["txtOwnerId"], (*path, "txtOwnerId")
    if isinstance(node.get("domainFilters"), list):
        for i, item in enumerate(node["domainFilters"]):
            if isinstance(item, str) and item:
                yield "domains", item, (*path, "domainFilters", i)
    if isinstance(node.get("nodeName"), str) and node["nodeName"]:
        yield "node_names", node["nodeName"], (*path, "nodeName")
    if not NODE_CONTEXT.intersection(str(p) for p in path):
        return
    if isinstance(node.get(HOSTNAME_LABEL), str):
        yield "node_names", node[HOSTNAME_LABEL], (*path, HOSTNAME_LABEL)
    if node.get("key") in (HOSTNAME_LABEL, "metadata.name") and node.get("operator", "In") == "In":
        for i, item in enumerate(node.get("values") or []):
            if isinstance(item, str) and item:
                yield "node_names", item, (*path, "values", i)


def _walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[Found]:
    """Every site value below ``node``, as (field, value, path)."""
    if isinstance(node, dict):
        yield from _mapping_values(node, path)
        for key, value in node.items():
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, str):
                for prefix, name in ((OWNER_ARG, "external_dns_owner"), (DOMAIN_ARG, "domains")):
                    if item.startswith(prefix) and item[len(prefix) :]:
                        yield name, item[len(prefix) :], (*path, i)
            else:
                yield from _walk(item, (*path, i))


def _kind_values(obj: dict[str, Any]) -> Iterator[Found]:
    """Site values only some kinds hold: pool addresses, storage pool parameters."""
    kind = obj.get("kind")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    if kind == "IPAddressPool":
        for i, entry in enumerate(spec.get("addresses") or []):
            if isinstance(entry, str):
                yield "address_pool", entry, ("spec", "addresses", i)
    if kind == "StorageClass" and isinstance(obj.get("parameters"), dict):
        for key in STORAGE_POOL_PARAMETERS:
            if isinstance(obj["parameters"].get(key), str):
                yield "storage_pools", obj["parameters"][key], ("parameters", key)


# --- chart values ----------------------------------------------------------------------------------


def _values_texts(obj: dict[str, Any], config_maps: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """The ConfigMap values texts of a HelmRelease's ``valuesFrom``, in merge order."""
    texts = []
    namespace = meta(obj)[1]
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    for ref in spec.get("valuesFrom") or []:
        if not isinstance(ref, dict) or ref.get("kind") != "ConfigMap" or ref.get("targetPath"):
            continue
        data = config_maps.get((namespace, str(ref.get("name", ""))), {}).get("data") or {}
        text = data.get(str(ref.get("valuesKey") or "values.yaml"))
        if isinstance(text, str):
            texts.append(text)
    return texts


def _parse_values(text: str) -> Any:
    try:
        docs = load_all(text)
    except YamlSyntaxError:
        return None
    return docs[0] if docs and isinstance(docs[0], dict) else None


# --- locating a value in the files -----------------------------------------------------------------

_KEY = re.compile(r"""^(\s*(?:-\s+)*)((?:"[^"]*"|'[^']*'|[^\s'"#][^#]*?)\s*:(?=\s|$)\s*)?(.*)$""")


def split_line(line: str) -> tuple[str, str, str, str]:
    """(indent and list dashes, ``key:`` part, value part, trailing comment) of one YAML line."""
    match = _KEY.match(line.rstrip("\n"))
    assert match is not None  # the pattern matches any line
    head, key, rest = match.group(1), match.group(2) or "", match.group(3)
    cut = rest.find(" #")
    if rest.startswith("#"):
        cut = 0
    value, comment = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    return head, key, value, comment


def _token(value: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w.\-/])" + re.escape(value) + r"(?![\w.\-/])")


def _holds(found: Any, value: str) -> bool:
    """True when the scalar found is the value (or a comma-separated list holding it)."""
    if not isinstance(found, str):
        return False
    prefix = next((p for p in (OWNER_ARG, DOMAIN_ARG) if found.startswith(p)), "")
    return value in [part.strip() for part in found[len(prefix) :].split(",")]


class _Locator:
    """Finds the file and line that set a value of a cluster's built objects."""

    def __init__(self, tree: Tree, cluster: Cluster) -> None:
        self.tree, self.cluster = tree, cluster
        own = tree.rel(cluster.folder)
        foreign = tuple(tree.rel(f) for n, f in tree.discovered.items() if n != cluster.name)
        # The cluster's own files first, then shared ones (base); never another cluster's.
        files = [f for f in tree.sources.files() if not any(is_under(f, x) for x in foreign)]
        self.files = sorted(files, key=lambda f: not is_under(f, own))
        self.claimed: set[tuple[str, int]] = set()
        self._texts: dict[str, list[str]] = {}

    def lines(self, file: str) -> list[str]:
        if file not in self._texts:
            try:
                self._texts[file] = (self.tree.repo.root / file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                self._texts[file] = []
        return self._texts[file]

    def generator_file(self, text: str) -> str | None:
        """The file a generated ConfigMap's value was read from (same content)."""
        size = len(text.encode())
        for file in self.files:
            path = self.tree.repo.root / file
            try:
                if path.stat().st_size == size and path.read_text(encoding="utf-8") == text:
                    return file
            except (OSError, UnicodeDecodeError):
                continue
        return None

    def scan(
        self, phase: Phase, value: str, path: tuple[Any, ...], *, reuse: bool = False
    ) -> tuple[str, int] | None:
        """The first line not yet claimed (any line with ``reuse``) that sets ``value`` under the
        path's last key.

        For values a kustomize patch sets: the phase's own folder is read first, then the
        cluster's, then the shared files (base). ``reuse`` is for a value no line of its own sets
        (kustomize's ``replacements`` copy it from another object): the line that sets it there.
        """
        last_key = next((str(k) for k in reversed(path) if isinstance(k, str)), "")
        item = bool(path) and isinstance(path[-1], int)
        token = _token(value)
        folder = self.tree.rel(phase.folder) if phase.folder is not None else None
        ordered = sorted(self.files, key=lambda f: not (folder and is_under(f, folder)))
        for file in ordered:
            for number, line in enumerate(self.lines(file), 1):
                head, key, text, _ = split_line(line)
                if ((file, number) in self.claimed and not reuse) or not token.search(text):
                    continue
                named = key.rstrip().rstrip(":").strip("'\"") == last_key
                if named or (item and not key and head.rstrip().endswith("-")):
                    return file, number
        return None


@dataclass
class _Pending:
    """A value found in a built object, and the documents that may set it (highest precedence first)."""

    phase: Phase
    obj: dict[str, Any]
    field: str
    value: str
    path: tuple[Any, ...]
    origins: list[tuple[str | None, Any, tuple[Any, ...]]]

    def exact(self) -> tuple[str, int | None] | None:
        for file, doc, prefix in self.origins:
            if file is not None and _holds(dig(doc, (*prefix, *self.path)), self.value):
                return file, line_of(doc, *prefix, *self.path)
        return None


def _pending(tree: Tree, cluster: Cluster, locator: _Locator) -> list[_Pending]:
    """Every site value of the cluster's phases, with where each may be set."""
    config_maps = {
        (meta(o)[1], meta(o)[0]): o for p in cluster.phases for o in p.objects if o.get("kind") == "ConfigMap"
    }
    found = []
    for phase in cluster.phases:
        for obj in phase.objects:
            kind = obj.get("kind")
            if kind in NOT_WALKED:
                continue
            src = tree.source_of(obj, cluster.name)
            file, data = (src.file, src.data) if src is not None else (None, None)
            if kind == "HelmRelease":
                origins: list[tuple[str | None, Any, tuple[Any, ...]]] = [(file, data, ("spec", "values"))]
                values: dict[str, Any] = {}
                for text in _values_texts(obj, config_maps):
                    parsed = _parse_values(text)
                    if parsed is not None:
                        values = merge_maps(values, parsed)
                        origins.insert(1, (locator.generator_file(text), parsed, ()))
                spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
                if isinstance(spec.get("values"), dict):
                    values = merge_maps(values, spec["values"])
                items = list(_walk(values))
            else:
                origins, items = [(file, data, ())], [*_walk(obj), *_kind_values(obj)]
            found += [_Pending(phase, obj, f, v, p, origins) for f, v, p in items]
    return found


def read_site_values(tree: Tree, cluster: Cluster) -> list[SiteValue]:
    """Every site value the cluster's phases apply, each with the file and line that sets it.

    A value is located in the document that sets it (the object's file, or the values file of a
    chart's ConfigMap); one a kustomize patch sets is found by its key and value in the files,
    each line given to one value only; one that no line sets (``replacements`` copy it from
    another object) is given the line that sets it there.
    """
    locator = _Locator(tree, cluster)
    pending = _pending(tree, cluster, locator)
    places: list[tuple[str, int | None] | None] = [p.exact() for p in pending]
    locator.claimed.update((f, n) for f, n in (p for p in places if p) if n)
    for i, item in enumerate(pending):
        if places[i] is None:
            places[i] = locator.scan(item.phase, item.value, item.path)
            if places[i] is not None:
                locator.claimed.add(places[i])  # type: ignore[arg-type]
    for i, item in enumerate(pending):
        if places[i] is None:  # copied by kustomize from a value another line sets
            places[i] = locator.scan(item.phase, item.value, item.path, reuse=True)
    result = []
    for item, place in zip(pending, places, strict=True):
        if place is None:
            fallback = where(tree, cluster, item.phase, item.obj)
            place = fallback.get("file", ""), fallback.get("line")
        result.append(
            SiteValue(item.field, item.value, cluster.name, item.phase.name, label(item.obj), *place)
        )
    return result


# --- values: parsing and checking ------------------------------------------------------------------


def address_range(entry: str) -> tuple[IP, IP]:
    """First and last address of a pool entry (address, CIDR or ``first-last`` range); ValueError if bad."""
    text = entry.strip()
    if "-" in text:
        first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
        if first.version != last.version or first > last:
            raise ValueError("range ends differ in family or are reversed")
        return first, last
    network = ipaddress.ip_network(text, strict=False)
    return network[0], network[-1]


def in_ranges(ip: IP, ranges: list[tuple[IP, IP]]) -> bool:
    """True when ``ip`` lies in one of the ranges."""
    return any(first.version == ip.version and first <= ip <= last for first, last in ranges)


def check_value(field: str, value: str) -> str:
    """A new value for ``field``, stripped; LayoutError naming the option when it cannot be one."""
    text = value.strip()
    option = FIELDS[field].option
    try:
        if field == "address_pool":
            address_range(text)
        elif field == "lb_ips":
            ipaddress.ip_address(text)
        elif field in ("node_names", "domains") and not DNS_NAME.match(text):
            raise ValueError("use lowercase letters, digits, '-' and '.'")
        elif not NO_SPACE.match(text):
            raise ValueError("it must be one word without spaces")
    except ValueError as exc:
        raise LayoutError(f"{option} {value!r} is not a valid {FIELDS[field].what}: {exc}") from None
    return text


def yaml_scalar(value: str) -> str:
    """``value`` as a YAML scalar that reads back as that string (quoted only when it must be)."""
    try:
        plain = yaml.safe_load(value) == value and "\n" not in value
    except yaml.YAMLError:
        plain = False
    return value if plain else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rewrite_line(line: str, mapping: dict[str, str]) -> str | None:
    """``line`` with each old value of ``mapping`` in its value part replaced; None if none is there."""
    head, key, value, comment = split_line(line)
    olds = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.\-/])(" + "|".join(re.escape(o) for o in olds) + r")(?![\w.\-/])")
    if not pattern.search(value):
        return None
    bare = value.strip()
    if bare in mapping:  # the whole scalar: keep it a string
        new = value.replace(bare, yaml_scalar(mapping[bare]), 1)
    else:
        new = pattern.sub(lambda m: mapping[m.group(1)], value)
    return head + key + new + comment


def is_under(file: str, folder: Path | str) -> bool:
    """True when the repository-relative ``file`` lies in ``folder`` (also repository-relative)."""
    return file.startswith(str(folder).rstrip("/") + "/")
