"""Which Kubernetes release each cluster runs: the ``kubernetes_version`` setting, else the inventory.

The inventory's ``k3s_version`` of a cluster's servers (``v1.33.4+k3s1`` -> ``1.33``; the oldest
when servers differ, agents when there is no server) says what the API server serves. The setting
``fluxops.kubernetes_version`` (invoke.yaml, ``INVOKE_FLUXOPS_KUBERNETES_VERSION``) overrides it
for every cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxops.errors import FluxopsError
from fluxops.inventory.model import Inventory

VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$")
SETTING = "fluxops.kubernetes_version"


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

    Settings come from invoke's configuration files at ``root`` and ``INVOKE_*`` variables; a
    checkout without them (any Flux repository) has no known versions.
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
            self._load()
        if self._problem:
            return ClusterVersion(problem=self._problem)
        return kubernetes_version(self._override, self._inventory, cluster)

    def _load(self) -> None:
        self._loaded = True
        section = _invoke_section(self.root)
        self._override = section.get("kubernetes_version")
        path = section.get("inventory")
        if not isinstance(path, str) or not path:
            return
        file = Path(path).expanduser()
        file = file if file.is_absolute() else self.root / file
        if not file.is_file():
            return
        from fluxops import inventory

        clusters = section.get("clusters")
        try:
            self._inventory = inventory.load(
                file, clusters=dict(clusters) if clusters else None, root=self.root
            )
        except FluxopsError as exc:
            self._problem = f"cannot read the clusters' Kubernetes versions: {exc}"


def _invoke_section(root: Path) -> dict[str, Any]:
    """The ``fluxops`` section of invoke's configuration for the project at ``root``."""
    from invoke import Config

    defaults = Config.global_defaults()
    defaults["fluxops"] = {"kubernetes_version": None}  # so INVOKE_FLUXOPS_KUBERNETES_VERSION applies
    config = Config(defaults=defaults, project_location=str(root))
    config.load_base_conf_files()
    config.load_project()
    config.load_shell_env()
    section = config.get("fluxops")
    return dict(section) if section else {}
