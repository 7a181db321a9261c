"""Clusters and hosts from an Ansible-style YAML inventory, validated with file:line errors.

The layout is Ansible's: ``all`` -> ``children`` -> one group per cluster -> ``hosts``, with
``vars`` at every level. Variables resolve as Ansible does: host over group over ``all``
(a nested group over its parent). Values tagged ``!secret`` or ``!vault``, and variables whose
name says password/token/secret, are masked wherever the inventory is shown.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.constructor import ConstructorError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from fluxops.errors import InventoryError
from fluxops.masking import Secret

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SECRET_NAME_RE = re.compile(r"(password|passwd|token|secret|api_key|private_key(?!_file))", re.I)
GROUP_KEYS = {"hosts", "vars", "children"}
DEFAULT_PORT = 22
DEFAULT_USER = "root"
SECRET_TAGS = ("!secret", "!vault")


@dataclass(frozen=True)
class Host:
    """One SSH-reachable node of a cluster, with its resolved variables."""

    name: str
    cluster: str
    address: str
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    key_file: Path | None = None
    become: bool = False
    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_loopback(self) -> bool:
        """True when the address is a literal 127.0.0.0/8 address."""
        return is_loopback(self.address)

    def public_vars(self) -> dict[str, Any]:
        """Variables with every secret value shown as ``***``."""
        return {k: str(v) if isinstance(v, Secret) else v for k, v in self.vars.items()}


@dataclass(frozen=True)
class Cluster:
    """A group of the inventory: one k3s cluster and its hosts."""

    name: str
    hosts: tuple[Host, ...]


@dataclass(frozen=True)
class Inventory:
    """All clusters of one inventory file."""

    path: Path
    clusters: Mapping[str, Cluster]

    @property
    def hosts(self) -> tuple[Host, ...]:
        """Every host, cluster by cluster."""
        return tuple(h for c in self.clusters.values() for h in c.hosts)

    def cluster(self, name: str) -> Cluster:
        """The cluster called ``name``, or an InventoryError listing the known ones."""
        if name not in self.clusters:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise InventoryError(f"unknown cluster {name!r}; clusters here: {known}", path=str(self.path))
        return self.clusters[name]

    def host(self, name: str) -> Host:
        """The host called ``name``, or an InventoryError listing the known ones."""
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts) or "none"
        raise InventoryError(f"unknown host {name!r}; hosts here: {known}", path=str(self.path))

    def select(self, cluster: str | None = None) -> tuple[Host, ...]:
        """The hosts of one cluster, or of all when ``cluster`` is None."""
        return self.cluster(cluster).hosts if cluster else self.hosts


def is_loopback(address: str) -> bool:
    """True when ``address`` is a literal IPv4 address in 127.0.0.0/8."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        return False


class _Loader:
    """Walks the parsed YAML, collecting clusters and raising errors with line numbers."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.host_cluster: dict[str, str] = {}
        self.host_vars: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.host_nodes: dict[str, tuple[Any, Any, CommentedMap]] = {}

    def error(self, message: str, node: Any = None, key: Any = None) -> InventoryError:
        return InventoryError(message, path=str(self.path), line=_line(node, key))

    def mapping(self, node: Any, what: str, parent: Any, key: Any) -> CommentedMap:
        if node is None:
            return CommentedMap()
        if not isinstance(node, Mapping):
            raise self.error(f"{what} must be a mapping, got {_kind(node)}", parent, key)
        return node  # type: ignore[return-value]

    def load(self, doc: Any) -> Inventory:
        if not isinstance(doc, Mapping) or "all" not in doc:
            raise InventoryError(
                "the inventory must start with 'all:' (Ansible YAML inventory: all -> children -> clusters)",
                path=str(self.path),
                line=1,
            )
        extra = [k for k in doc if k != "all"]
        if extra:
            raise self.error(
                f"unknown top-level key {extra[0]!r}; put clusters under all.children", doc, extra[0]
            )
        root = self.mapping(doc["all"], "'all'", doc, "all")
        self.check_group_keys(root, "all")
        if root.get("hosts"):
            first = next(iter(root["hosts"]))
            raise self.error(
                f"host {first!r} is in no cluster; move it under all.children.<cluster>.hosts",
                root["hosts"],
                first,
            )
        all_vars = self.vars(root, "all")
        children = self.mapping(root.get("children"), "all.children", root, "children")
        if not children:
            raise self.error("no clusters: add groups under all.children", root, "children" if root else None)
        clusters: dict[str, Cluster] = {}
        for name, group in children.items():
            self.check_name(str(name), "cluster", children, name)
            self.walk_group(str(name), group, children, name, [(0, all_vars)], depth=1)
        for name in children:
            hosts = tuple(self.build_host(h) for h, c in self.host_cluster.items() if c == str(name))
            if not hosts:
                raise self.error(f"cluster {name!r} has no hosts", children, name)
            clusters[str(name)] = Cluster(name=str(name), hosts=hosts)
        return Inventory(path=self.path, clusters=clusters)

    def check_group_keys(self, group: CommentedMap, where: str) -> None:
        for key in group:
            if key not in GROUP_KEYS:
                raise self.error(
                    f"unknown key {key!r} in group {where!r}; a group holds only hosts, vars and children",
                    group,
                    key,
                )

    def check_name(self, name: str, what: str, node: Any, key: Any) -> None:
        if not NAME_RE.match(name):
            raise self.error(
                f"{what} name {name!r} is not valid; use lowercase letters, digits and '-' (a DNS label)",
                node,
                key,
            )

    def vars(self, group: CommentedMap, where: str) -> dict[str, Any]:
        values = self.mapping(group.get("vars"), f"vars of {where!r}", group, "vars")
        return {str(k): _plain(v, str(k)) for k, v in values.items()}

    def walk_group(
        self,
        cluster: str,
        node: Any,
        parent: Any,
        key: Any,
        inherited: list[tuple[int, dict[str, Any]]],
        depth: int,
    ) -> None:
        group = self.mapping(node, f"group {key!r}", parent, key)
        self.check_group_keys(group, str(key))
        layers = [*inherited, (depth, self.vars(group, str(key)))]
        hosts = self.mapping(group.get("hosts"), f"hosts of {key!r}", group, "hosts")
        for host_name, host_node in hosts.items():
            name = str(host_name)
            self.check_name(name, "host", hosts, host_name)
            owner = self.host_cluster.get(name)
            if owner is not None and owner != cluster:
                raise self.error(
                    f"host {name!r} is in two clusters ({owner!r} and {cluster!r}); a host belongs to one",
                    hosts,
                    host_name,
                )
            own = self.mapping(host_node, f"host {name!r}", hosts, host_name)
            host_layer = (10_000, {str(k): _plain(v, str(k)) for k, v in own.items()})
            self.host_cluster[name] = cluster
            self.host_vars.setdefault(name, []).extend([*layers, host_layer])
            self.host_nodes.setdefault(name, (hosts, host_name, own))
        children = self.mapping(group.get("children"), f"children of {key!r}", group, "children")
        for child, child_node in children.items():
            self.walk_group(cluster, child_node, children, child, layers, depth + 1)

    def build_host(self, name: str) -> Host:
        merged: dict[str, Any] = {}
        for _, layer in sorted(self.host_vars[name], key=lambda item: item[0]):
            merged.update(layer)
        hosts, key, own = self.host_nodes[name]

        def where(var: str) -> tuple[Any, Any]:
            return (own, var) if var in own else (hosts, key)

        def typed(var: str, kind: type | tuple[type, ...], label: str) -> Any:
            value = merged.get(var)
            if value is None:
                return None
            if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
                raise self.error(f"host {name!r}: {var} must be {label}, got {value!r}", *where(var))
            return value

        address = typed("ansible_host", str, "a hostname or IP address (a string)")
        if not address:
            raise self.error(f"host {name!r} has no address; set ansible_host: <IP or DNS name>", hosts, key)
        port = typed("ansible_port", int, "a port number") or DEFAULT_PORT
        if not 0 < port < 65536:
            raise self.error(
                f"host {name!r}: ansible_port {port} is out of range 1-65535", *where("ansible_port")
            )
        user = typed("ansible_user", str, "a user name (a string)") or DEFAULT_USER
        key_file = typed("ansible_ssh_private_key_file", str, "a path (a string)")
        become = typed("ansible_become", bool, "true or false")
        known_hosts = typed("fluxops_known_hosts_file", str, "a path (a string)")
        accept_new = typed("fluxops_accept_new_host_key", bool, "true or false")
        base = self.path.parent
        return Host(
            name=name,
            cluster=self.host_cluster[name],
            address=address,
            port=port,
            user=user,
            key_file=_resolve(base, key_file),
            become=bool(become),
            known_hosts=_resolve(base, known_hosts),
            accept_new_host_key=bool(accept_new),
            vars=merged,
        )


def _resolve(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _line(node: Any, key: Any = None) -> int | None:
    """1-based line of ``key`` in mapping ``node`` (or of the node itself)."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is not None:
            return int(lc.key(key)[0]) + 1
        return int(lc.line) + 1
    except (KeyError, TypeError, AttributeError):
        return None


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _plain(value: Any, name: str) -> Any:
    """A YAML value as plain Python, secrets wrapped in :class:`Secret`."""
    tag = getattr(getattr(value, "tag", None), "value", None)
    if tag in SECRET_TAGS:
        return Secret(str(value.value if hasattr(value, "value") else value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, name) for v in value]
    if isinstance(value, str) and SECRET_NAME_RE.search(name):
        return Secret(str(value))
    if isinstance(value, str):
        return str(value)
    return value


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def loads(text: str, path: Path) -> Inventory:
    """Parse and validate inventory ``text`` that came from ``path``."""
    try:
        doc = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        if isinstance(exc, ConstructorError) or "duplicate" in problem:
            problem = f"{problem}; each key may appear once per mapping"
        raise InventoryError(f"YAML error: {problem}", path=str(path), line=line) from None
    except YAMLError as exc:
        raise InventoryError(f"YAML error: {exc}", path=str(path)) from None
    return _Loader(path, text).load(doc)


def load(path: Path | str) -> Inventory:
    """Load and validate the inventory file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InventoryError(
            "inventory file not found; set fluxops.inventory in invoke.yaml or INVOKE_FLUXOPS_INVENTORY",
            path=str(path),
        ) from None
    except OSError as exc:
        raise InventoryError(f"cannot read inventory: {exc.strerror}", path=str(path)) from None
    return loads(text, path)


def as_dict(hosts: Iterable[Host]) -> list[dict[str, Any]]:
    """Hosts as plain data (secrets masked), e.g. for JSON output."""
    return [
        {
            "name": h.name,
            "cluster": h.cluster,
            "address": h.address,
            "port": h.port,
            "user": h.user,
            "key_file": str(h.key_file) if h.key_file else None,
            "become": h.become,
            "vars": h.public_vars(),
        }
        for h in hosts
    ]
