"""Flux on the node: ``flux install``, then the cluster's GitRepository and entry Kustomization.

Why not ``flux bootstrap git``: it commits and pushes ``gotk-components.yaml`` and ``gotk-sync.yaml``
to the repository, so it needs a deploy key with write access and changes the repository as a side
effect of touching a cluster. This tree already holds its sync objects (``flux-system/gotk-sync.yaml``),
so bootstrap installs the controllers and applies those objects (with the inventory's URL, branch and
path): Flux then needs read access only, and a bootstrap changes nothing in git.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from fluxops.bootstrap.key import put_secret
from fluxops.bootstrap.node import FLUX_NAMESPACE, BootstrapError, Node
from fluxops.bootstrap.target import DEPLOY_KEY_VAR, KNOWN_HOSTS_VAR, Target
from fluxops.masking import Secret

INSTALL_TIMEOUT = 600.0
CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller", "notification-controller")


def installed(node: Node) -> bool:
    """True when Flux's controllers are deployed on the node."""
    found = node.get_json("deployments", "-n", FLUX_NAMESPACE, check=False)
    names = {str((d.get("metadata") or {}).get("name")) for d in (found or {}).get("items") or []}
    return all(c in names for c in CONTROLLERS)


def install(node: Node) -> bool:
    """``flux install`` unless Flux runs already; True when it installed."""
    if installed(node):
        return False
    result = node.flux("install", check=False, timeout=INSTALL_TIMEOUT)
    if not result.ok:
        raise BootstrapError(f"{node.name}: flux install failed: {result.stderr.strip()}")
    return True


def sync_yaml(target: Target) -> str:
    """The GitRepository and the entry Kustomization, as YAML."""
    return yaml.safe_dump_all([target.git_repository, target.kustomization], sort_keys=False)


def deploy_key_entries(target: Target) -> dict[str, Secret] | None:
    """The GitRepository's deploy-key Secret from the inventory's key files (None when not set)."""
    key_file = target.var(DEPLOY_KEY_VAR)
    if not key_file:
        return None
    path = Path(str(key_file)).expanduser()
    try:
        entries = {"identity": Secret(path.read_text(encoding="utf-8"))}
        known = target.var(KNOWN_HOSTS_VAR)
        if known:
            entries["known_hosts"] = Secret(Path(str(known)).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise BootstrapError(f"cannot read the deploy key of cluster {target.cluster}: {exc}") from None
    return entries


def secret_ref(target: Target) -> str:
    """The Secret the GitRepository reads its credentials from ("" when none)."""
    return str(((target.git_repository.get("spec") or {}).get("secretRef") or {}).get("name") or "")


def point_at_repository(node: Node, target: Target) -> list[str]:
    """The deploy key (when the inventory names one), the GitRepository and the entry Kustomization;
    kubectl's lines (``... unchanged`` when nothing changed)."""
    lines = []
    entries = deploy_key_entries(target)
    if entries is not None and secret_ref(target):
        lines.append(f"secret/{secret_ref(target)} {put_secret(node, secret_ref(target), entries)}")
    return lines + node.apply(sync_yaml(target))
