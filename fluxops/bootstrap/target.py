"""What bootstrap points Flux at for a cluster: git URL, branch and path, and the server it talks to.

The tree's entry (``k8s/clusters/<c>/flux-system/gotk-sync.yaml``: the GitRepository and the entry
Kustomization, found as layout discovery finds them) gives the objects; the inventory's variables
``flux_git_url``, ``flux_git_branch`` and ``flux_path`` (docs/bootstrap.md) override URL, branch and
path, so the same tree can be bootstrapped from another remote (a sandbox's local git server).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxops import inventory as inv
from fluxops.bootstrap.node import BootstrapError
from fluxops.errors import FluxopsError

URL_VAR, BRANCH_VAR, PATH_VAR = "flux_git_url", "flux_git_branch", "flux_path"
DEPLOY_KEY_VAR, KNOWN_HOSTS_VAR = "flux_deploy_key_file", "flux_known_hosts_file"


@dataclass
class Target:
    """One cluster's bootstrap target."""

    cluster: str
    root: Path
    host: inv.Host
    git_repository: dict[str, Any]
    kustomization: dict[str, Any]

    @property
    def url(self) -> str:
        """The git URL Flux reads."""
        return str(self.git_repository["spec"]["url"])

    @property
    def branch(self) -> str:
        """The branch Flux follows."""
        return str((self.git_repository["spec"].get("ref") or {}).get("branch") or "master")

    @property
    def path(self) -> str:
        """The entry Kustomization's path in the repository."""
        return str(self.kustomization["spec"].get("path") or "./")

    @property
    def entry(self) -> str:
        """The entry Kustomization's name (flux bootstrap's ``flux-system``)."""
        return str(self.kustomization["metadata"]["name"])

    def var(self, name: str) -> Any:
        """An inventory variable of the cluster's server."""
        return self.host.vars.get(name)


def server_of(inventory: inv.Inventory, cluster: str) -> inv.Host:
    """The cluster's k3s server (its first host)."""
    try:
        found = inventory.cluster(cluster)
    except FluxopsError as exc:
        raise BootstrapError(str(exc)) from None
    servers = [h for h in found.hosts if h.role == "server"] or list(found.hosts)
    if not servers:
        raise BootstrapError(f"cluster {cluster} has no host in {inventory.path}")
    return servers[0]


def target_for(root: Path, inventory: inv.Inventory, cluster: str) -> Target:
    """The cluster's target: the tree's entry objects with the inventory's URL, branch and path."""
    from fluxops.sim.rehearse import find_entry

    host = server_of(inventory, cluster)
    entry = find_entry(root, cluster)
    repo = json.loads(json.dumps(entry.git_repository))  # plain dicts (the tree's mappings keep positions)
    ks = json.loads(json.dumps(entry.kustomization))
    spec = repo.setdefault("spec", {})
    if host.vars.get(URL_VAR):
        spec["url"] = str(host.vars[URL_VAR])
    if host.vars.get(BRANCH_VAR):
        spec["ref"] = {"branch": str(host.vars[BRANCH_VAR])}
    if host.vars.get(PATH_VAR):
        ks.setdefault("spec", {})["path"] = str(host.vars[PATH_VAR])
    if not spec.get("url"):
        raise BootstrapError(
            f"no git URL for cluster {cluster}: set {URL_VAR} in {inventory.path} (or spec.url in the "
            "tree's GitRepository)"
        )
    return Target(cluster, Path(root), host, repo, ks)
