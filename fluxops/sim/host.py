"""Where the simulator's CLIs keep things on a host: k3s's own paths, the node's state, the calls log.

The paths are k3s's (``/etc/rancher/k3s/config.yaml``, ``k3s.yaml``, ``/var/lib/rancher/k3s/...``);
``$FLUXOPS_SIM_PREFIX`` puts them all under another folder (tests without root). A kubeconfig the
simulator writes names its node's state folder in a cluster extension (``fluxops.sim``), which real
kubectl ignores; ``$FLUXOPS_SIM_STATE`` overrides it. Every CLI call appends its argv (never its
environment or stdin) to ``/run/fluxops-stand-in/<tool>-calls.jsonl``, as node bring-up's stand-ins do.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from fluxops.files import atomic_write

PREFIX_ENV = "FLUXOPS_SIM_PREFIX"
STATE_ENV = "FLUXOPS_SIM_STATE"
EXTENSION = "fluxops.sim"
CONFIG = "/etc/rancher/k3s/config.yaml"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
DATA = "/var/lib/rancher/k3s"
SERVER_STATE = f"{DATA}/server/sim"
AGENT_STATE = f"{DATA}/agent/sim"
KUBELET_KUBECONFIG = f"{DATA}/agent/kubelet.kubeconfig"
NODE_TOKEN = f"{DATA}/server/node-token"
CALLS = "/run/fluxops-stand-in"


def path(absolute: str) -> Path:
    """A host path, under ``$FLUXOPS_SIM_PREFIX`` when it is set."""
    prefix = os.environ.get(PREFIX_ENV)
    return Path(prefix) / absolute.lstrip("/") if prefix else Path(absolute)


def record(tool: str, argv: list[str]) -> None:
    """Append this call's argv to the tool's calls log (best effort: a read-only /run stops no call)."""
    try:
        folder = path(CALLS)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{tool}-calls.jsonl").open("a") as log:
            log.write(json.dumps({"argv": argv, "pid": os.getpid(), "time": time.time()}) + "\n")
    except OSError:
        pass


def kubeconfig_text(server: str, state: Path, seed: str) -> str:
    """A kubeconfig as k3s writes one, naming the node's state folder in the ``fluxops.sim`` extension."""
    import base64

    def data(what: str) -> str:
        return base64.b64encode(f"simulated {what} {seed}".encode()).decode()

    config = {
        "apiVersion": "v1",
        "clusters": [
            {
                "cluster": {
                    "certificate-authority-data": data("certificate authority"),
                    "server": server,
                    "extensions": [{"name": EXTENSION, "extension": {"state": str(state)}}],
                },
                "name": "default",
            }
        ],
        "contexts": [{"context": {"cluster": "default", "user": "default"}, "name": "default"}],
        "current-context": "default",
        "kind": "Config",
        "preferences": {},
        "users": [
            {"name": "default", "user": {"client-certificate-data": data("client certificate"),
                                         "client-key-data": data("client key")}}
        ],
    }  # fmt: skip
    return yaml.safe_dump(config, sort_keys=False)


def write_kubeconfig(target: Path, server: str, state: Path, seed: str, mode: int) -> None:
    """Write a kubeconfig atomically with ``mode``."""
    atomic_write(target, kubeconfig_text(server, state, seed), mode=mode)


def state_of(kubeconfig: Path | None) -> Path:
    """The node state a kubeconfig points at (``$FLUXOPS_SIM_STATE`` first, else the server's default)."""
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit)
    if kubeconfig is not None and kubeconfig.is_file():
        try:
            config: Any = yaml.safe_load(kubeconfig.read_text())
            for cluster in config.get("clusters") or []:
                for ext in (cluster.get("cluster") or {}).get("extensions") or []:
                    if ext.get("name") == EXTENSION and (ext.get("extension") or {}).get("state"):
                        return Path(ext["extension"]["state"])
        except (OSError, yaml.YAMLError, AttributeError):
            pass
    return path(SERVER_STATE)
