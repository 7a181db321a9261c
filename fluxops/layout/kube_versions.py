"""Which Kubernetes release each cluster runs: the ``kubernetes_version`` setting, else the inventory.

The inventory's ``k3s_version`` of a cluster's servers (``v1.33.4+k3s1`` -> ``1.33``; the oldest
when servers differ) says what the API server serves. The setting
``fluxops.kubernetes_version`` (invoke.yaml, ``INVOKE_FLUXOPS_KUBERNETES_VERSION``) overrides it
for every cluster.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxops.errors import ConfigError, FluxopsError
from fluxops.inventory.model import Inventory

VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$")
SETTING = "fluxops.kubernetes_version"
ENV_KEYS = ("inventory", "kubernetes_version")


@dataclass(frozen=True)
class ClusterVersion:
    """A cluster's Kubernetes release (None: not known), where it was read, and any problem reading it."""

    release: str | None = None
    origin: str = ""
    file: str = ""
    problem: str = ""


def parse_version(text: Any) -> str | None:
    """``"1.33"`` from ``v1.33.4+k3s1``, ``1.33.4`` or ``1.33``; None when it is no version."""
    found = VERSION.match(str(text).strip())
    return f"{int(found.group(1))}.{int(found.group(2))}" if found else None


def kubernetes_version(override: Any, inventory: Inventory | None, cluster: str) -> ClusterVersion:
    """The release ``cluster`` runs: ``override`` (the setting) when set, else its hosts' ``k3s_version``."""
    if override not in (None, ""):
        release = parse_version(override)
        if release is None or isinstance(override, float) or re.fullmatch(r"v?1\.\d", str(override)):
            return ClusterVersion(
                problem=f"{SETTING} {override!r} is not a Kubernetes version; write it as a quoted "
                "string such as '1.33' (YAML reads 1.30 as the number 1.3)"
            )
        return ClusterVersion(release, f"{SETTING} {override}")
    if inventory is None or cluster not in inventory.clusters:
        return ClusterVersion()
    hosts = inventory.clusters[cluster].hosts
    servers = [h for h in hosts if h.role == "server"] or list(hosts)
    found: list[tuple[tuple[int, int], str, str]] = []
    for host in servers:
        value = host.vars.get("k3s_version")
        if value is None:
            continue
        release = parse_version(value)
        if release is None:
            return ClusterVersion(
                file=str(inventory.path),
                problem=f"k3s_version {value!r} of host {host.name} is not a version (e.g. v1.33.4+k3s1)",
            )
        major, minor = release.split(".")
        found.append(((int(major), int(minor)), release, f"k3s_version {value} of {host.name}"))
    if not found:
        return ClusterVersion()
    _, release, origin = min(found)
    return ClusterVersion(release, origin, str(inventory.path))


class RepositoryVersions:
    """Each cluster's release as the fluxops project at ``root`` configures it (read on first use).

    The ``fluxops`` section of ``root/invoke.yaml`` names the inventory and may set
    ``kubernetes_version``; ``INVOKE_FLUXOPS_INVENTORY`` and ``INVOKE_FLUXOPS_KUBERNETES_VERSION``
    override them as invoke would. A repository without them (any Flux repository) has no known
    versions.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._loaded = False
        self._override: Any = None
        self._inventory: Inventory | None = None
        self._problem = ""

    def __call__(self, cluster: str) -> ClusterVersion:
        """The release ``cluster`` runs, as far as the project says."""
        if not self._loaded:
            self._loaded = True
            try:
                self._load()
            except FluxopsError as exc:
                self._problem = f"cannot read the clusters' Kubernetes versions: {exc}"
        if self._problem:
            return ClusterVersion(problem=self._problem)
        return kubernetes_version(self._override, self._inventory, cluster)

    def _load(self) -> None:
        section = project_section(self.root)
        self._override = section.get("kubernetes_version")
        path = section.get("inventory")
        if not isinstance(path, str) or not path:
            return
        file = Path(path).expanduser()
        file = file if file.is_absolute() else self.root / file
        if file.is_file():
            from fluxops import inventory

            clusters = section.get("clusters")
            self._inventory = inventory.load(
                file, clusters=dict(clusters) if clusters else None, root=self.root
            )


def project_section(root: Path) -> dict[str, Any]:
    """The ``fluxops`` settings this module reads: ``root/invoke.yaml``, then ``INVOKE_FLUXOPS_*``."""
    import yaml

    path = root / "invoke.yaml"
    section: dict[str, Any] = {}
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        found = data.get("fluxops") if isinstance(data, dict) else None
        section = dict(found) if isinstance(found, dict) else {}
    for key in ENV_KEYS:
        value = os.environ.get(f"INVOKE_FLUXOPS_{key.upper()}")
        if value is not None:
            section[key] = value
    return section
