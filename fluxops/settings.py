"""Project settings: the ``fluxops:`` section of invoke's config, resolved to typed values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from fluxops.errors import ConfigError

DEFAULT_SANDBOX_SUBNET = IPv4Network("10.250.0.0/24")


@dataclass(frozen=True)
class LayoutSettings:
    """How ``layout.*`` reads the Flux tree (``fluxops.layout``); paths are relative to the repository.

    ``policy`` names a conventions policy checked on top of Flux's own rules (none: Flux's rules only);
    ``folders`` limits where clusters are looked for and manifests read (empty: the whole repository);
    ``clusters`` names cluster folders outright (empty: found from their entry Kustomizations).
    """

    policy: str | None = None
    folders: tuple[str, ...] = ()
    clusters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Resolved settings; relative paths are taken from the project root."""

    root: Path
    inventory: Path
    key_dir: Path
    accept_new_host_key: bool
    connect_timeout: float
    command_timeout: float
    sandbox_inventory: Path
    sandbox_dir: Path
    sandbox_subnet: IPv4Network = DEFAULT_SANDBOX_SUBNET
    kubernetes_version: str | None = None  # overrides each cluster's (layout schemas)
    clusters: Mapping[str, str] = field(default_factory=dict)
    layout: LayoutSettings = field(default_factory=LayoutSettings)


def layout_settings(value: Any) -> LayoutSettings:
    """``fluxops.layout`` as typed settings; ConfigError naming the key that is wrong."""
    if value is None:
        return LayoutSettings()
    if not isinstance(value, Mapping):
        raise ConfigError(f"fluxops.layout must be a mapping (policy, folders, clusters), got {value!r}")
    unknown = sorted(set(value) - {"policy", "folders", "clusters"})
    if unknown:
        raise ConfigError(f"fluxops.layout has unknown keys {unknown}; known: policy, folders, clusters")
    policy = value.get("policy")
    if policy is not None and (not isinstance(policy, str) or not policy):
        raise ConfigError(f"fluxops.layout.policy must be a policy name (fluxops-phases), got {policy!r}")
    folders = value.get("folders") or []
    if not isinstance(folders, list) or not all(isinstance(f, str) and f for f in folders):
        raise ConfigError(f"fluxops.layout.folders must be a list of folders (e.g. [k8s]), got {folders!r}")
    clusters = value.get("clusters") or {}
    if not isinstance(clusters, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in clusters.items()
    ):
        raise ConfigError(
            "fluxops.layout.clusters must map cluster names to folders (e.g. lab: k8s/clusters/lab), "
            f"got {clusters!r}"
        )
    return LayoutSettings(policy or None, tuple(folders), dict(clusters))


def repository_layout(root: Path) -> LayoutSettings:
    """The ``fluxops.layout`` section of ``root``'s own invoke.yaml (defaults when it has none)."""
    import yaml

    path = Path(root) / "invoke.yaml"
    if not path.is_file():
        return LayoutSettings()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the fluxops.layout settings: {exc}") from None
    section = data.get("fluxops") if isinstance(data, dict) else None
    return layout_settings(section.get("layout") if isinstance(section, dict) else None)


def _path(root: Path, value: Any, key: str) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(f"fluxops.{key} must be a path, got {value!r} (set it in invoke.yaml)")
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _number(value: Any, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"fluxops.{key} must be a number of seconds, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"fluxops.{key} must be positive, got {value!r}")
    return number


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
        return value.lower() in {"true", "1", "yes"}
    raise ConfigError(f"fluxops.{key} must be true or false, got {value!r}")


def _clusters(value: Any) -> dict[str, str]:
    """Cluster name -> inventory group; empty means every group under ``all`` is a cluster."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
    ):
        raise ConfigError(
            "fluxops.clusters must map cluster names to inventory groups (e.g. lab: k3s_cluster), "
            f"got {value!r}"
        )
    return dict(value)


def _subnet(value: Any) -> IPv4Network:
    """The sandbox hosts' IPv4 network (``fluxops.sandbox.subnet``), e.g. 10.250.0.0/24."""
    try:
        return IPv4Network(str(value))
    except ValueError as exc:
        raise ConfigError(
            f"fluxops.sandbox.subnet must be an IPv4 network such as 10.250.0.0/24, got {value!r} ({exc})"
        ) from None


def _key_dir(root: Path, value: Any) -> Path:
    """The key store; refused inside the repository, where one `git add` would publish the keys."""
    path = _path(root, value, "key_dir")
    if path.resolve().is_relative_to(Path(root).resolve()):
        raise ConfigError(
            f"fluxops.key_dir ({path}) is inside the repository ({root}); age private keys must live "
            "outside it: set key_dir to a folder outside the checkout, e.g. ~/.config/sops/age"
        )
    return path


def load(section: Mapping[str, Any] | None, root: Path) -> Settings:
    """Settings from the ``fluxops`` config mapping, with paths resolved against ``root``."""
    if not section:
        raise ConfigError("no fluxops section in the invoke config; run tasks from the project (invoke.yaml)")
    timeouts = section.get("timeouts") or {}
    sandbox = section.get("sandbox") or {}
    return Settings(
        root=root,
        inventory=_path(root, section.get("inventory"), "inventory"),
        key_dir=_key_dir(root, section.get("key_dir")),
        accept_new_host_key=_flag(section.get("accept_new_host_key", False), "accept_new_host_key"),
        connect_timeout=_number(timeouts.get("connect", 10), "timeouts.connect"),
        command_timeout=_number(timeouts.get("command", 600), "timeouts.command"),
        sandbox_inventory=_path(root, sandbox.get("inventory"), "sandbox.inventory"),
        sandbox_dir=_path(root, sandbox.get("dir"), "sandbox.dir"),
        sandbox_subnet=_subnet(sandbox.get("subnet", DEFAULT_SANDBOX_SUBNET)),
        clusters=_clusters(section.get("clusters")),
        kubernetes_version=str(v) if (v := section.get("kubernetes_version")) is not None else None,
        layout=layout_settings(section.get("layout")),
    )
