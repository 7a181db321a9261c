"""Bootstrap's checks on the node: sudo works, the k3s node is Ready, the flux CLI is there.

The host key is verified by the SSH connection itself (:class:`fluxops.shell.RemoteShell` refuses an
unknown or changed key before any command runs). Each failure says to run ``node.up``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fluxops.bootstrap.node import BootstrapError, Node
from fluxops.errors import CommandError, HostKeyError
from fluxops.progname import progname


@dataclass
class RemoteFacts:
    """What the remote preflight found."""

    nodes: list[str]
    flux_version: str


def _fix(host: str, cluster: str, what: str) -> BootstrapError:
    return BootstrapError(
        f"{host}: {what}. Bring the node up first: `{progname()} node.up --cluster {cluster}`"
    )


def preflight_remote(node: Node, cluster: str) -> RemoteFacts:
    """Check the node, in order: sudo (when needed), a Ready k3s node, the flux CLI."""
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
    return RemoteFacts(ready, version.stdout.strip().split()[-1] if version.stdout.strip() else "")
