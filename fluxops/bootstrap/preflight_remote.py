"""Bootstrap's checks on the node: sudo works, the k3s node is Ready, the flux CLI is the pinned one.

The host key is verified by the SSH connection itself (:class:`fluxops.shell.RemoteShell` refuses an
unknown or changed key before any command runs). Each failure says to run ``node.up``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fluxops.bootstrap.node import BootstrapError, Node
from fluxops.bootstrap.target import Target
from fluxops.errors import CommandError, FluxopsError, HostKeyError
from fluxops.progname import progname

FLUX_VERSION_VAR = "flux_version"  # the inventory's pin of the flux CLI (playbooks/node.yaml)
FLUX_VERSION_PLAY_VAR = "flux_cli_version"  # node.yaml's play variable: the pin, or its default


@dataclass
class RemoteFacts:
    """What the remote preflight found."""

    nodes: list[str]
    flux_version: str


def _fix(host: str, cluster: str, what: str) -> BootstrapError:
    return BootstrapError(
        f"{host}: {what}. Bring the node up first: `{progname()} node.up --cluster {cluster}`"
    )


def pinned_flux_version(target: Target) -> str | None:
    """The flux CLI version ``node.up`` installs on the cluster's server: the inventory's
    ``flux_version``, else node.yaml's default; None when neither is known (the repository has no
    ``playbooks/node.yaml``)."""
    from fluxops import node as nodes

    pinned = target.var(FLUX_VERSION_VAR)
    if pinned:
        return str(pinned)
    if not (target.root / nodes.PLAYBOOK).is_file():
        return None
    try:
        found = nodes.play_vars(target.host.vars, target.root).get(FLUX_VERSION_PLAY_VAR)
    except FluxopsError as exc:
        raise BootstrapError(f"cannot read the pinned flux version from {nodes.PLAYBOOK}: {exc}") from None
    return str(found) if found else None


def same_version(found: str, wanted: str) -> bool:
    """Are two versions the same, a leading ``v`` aside (``flux --version`` prints none)?"""
    return found.strip().removeprefix("v") == wanted.strip().removeprefix("v")


def preflight_remote(node: Node, cluster: str, flux_version: str | None = None) -> RemoteFacts:
    """Check the node, in order: sudo (when needed), a Ready k3s node, the flux CLI (at
    ``flux_version`` when given)."""
    try:
        if node.sudo:
            result = node.shell.run(["sudo", "-n", "true"], check=False, timeout=30)
            if not result.ok:
                raise _fix(node.name, cluster, f"sudo without a password fails ({result.stderr.strip()})")
        got = node.kubectl("get", "nodes", "-o", "json", check=False, timeout=60)
        if not got.ok:
            raise _fix(node.name, cluster, f"kubectl cannot reach k3s ({got.stderr.strip() or got.rc})")
        ready = []
        for item in json.loads(got.stdout or "{}").get("items") or []:
            conditions = (item.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                ready.append(str(item["metadata"]["name"]))
        if not ready:
            raise _fix(node.name, cluster, "no k3s node is Ready")
        version = node.flux("--version", check=False, timeout=60)
        if not version.ok:
            raise _fix(
                node.name, cluster, f"the flux CLI does not run ({version.stderr.strip() or version.rc})"
            )
    except HostKeyError:
        raise
    except CommandError as exc:
        raise _fix(node.name, cluster, str(exc)) from None
    found = version.stdout.strip().split()[-1] if version.stdout.strip() else ""
    if flux_version is not None and not same_version(found, flux_version):
        raise BootstrapError(
            f"{node.name}: the flux CLI is version {found or '(none printed)'}, but {flux_version} is "
            "pinned (the inventory's flux_version, else playbooks/node.yaml's default): "
            f"`{progname()} node.up --cluster {cluster}` installs the pinned version"
        )
    return RemoteFacts(ready, found)
