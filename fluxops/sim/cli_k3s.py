"""``k3s`` on a simulated node: ``server``, ``agent``, ``kubectl``, ``--version``, as node bring-up uses them.

- ``k3s server`` (what the k3s.service unit runs) reads /etc/rancher/k3s/config.yaml, keeps the join
  token in /var/lib/rancher/k3s/server/token (node-token links to it, 0600), makes or reopens the
  node's state (its API and Flux controllers), writes the kubeconfig /etc/rancher/k3s/k3s.yaml (server
  https://127.0.0.1:6443, mode ``write-kubeconfig-mode`` or 0600), tells systemd it is ready and runs
  the controllers until SIGTERM; its Node is Ready one second after it started, while it runs;
- ``k3s agent`` needs ``server`` (config.yaml or K3S_URL) and a token (K3S_TOKEN, config ``token`` or
  ``token-file``), writes /var/lib/rancher/k3s/agent/kubelet.kubeconfig and runs until stopped, its
  own Node Ready on its host;
- ``k3s kubectl ...`` is :mod:`fluxops.sim.cli_kubectl` with k3s.yaml as the default kubeconfig.

The node's Kubernetes version is ``$FLUXOPS_SIM_K3S_VERSION`` (a launcher sets it), its time factor
``$FLUXOPS_SIM_TIME_FACTOR`` (default 1: real time), its settings ``$FLUXOPS_SIM_SETTINGS`` (JSON,
read when the node is first made).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fluxops.files import atomic_write
from fluxops.sim import cli_kubectl, host
from fluxops.sim.cli_common import CliError, run_main, unsupported
from fluxops.sim.cluster import KUBERNETES, SimCluster

VERSION_ENV = "FLUXOPS_SIM_K3S_VERSION"
FACTOR_ENV = "FLUXOPS_SIM_TIME_FACTOR"
SETTINGS_ENV = "FLUXOPS_SIM_SETTINGS"  # JSON: the node's settings (git_rewrites, git_protocols, workers ...)
READY_AFTER = 1.0  # real seconds from start until the node reports Ready


def version() -> str:
    """The k3s version this node stands for."""
    return os.environ.get(VERSION_ENV) or KUBERNETES


def read_config(path: Path) -> dict[str, Any]:
    """k3s's config.yaml (flat YAML: ``key: value`` and ``key:`` with ``- item`` lines)."""
    import yaml

    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CliError(f"Error: failed to parse {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def node_name(config: dict[str, Any]) -> str:
    """The node's name: config ``node-name``, else the host name."""
    return str(config.get("node-name") or socket.gethostname())


def node_ready(sim: SimCluster, name: str) -> bool:
    """True while the node's k3s process runs and has run for READY_AFTER seconds."""
    process = sim.read().node.get("process") or {}
    if process.get("node") != name:
        return False
    pid = int(process.get("pid") or 0)
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    if b"server" not in cmdline and b"agent" not in cmdline:
        return False
    return time.time() - float(process.get("started", 0)) >= READY_AFTER


def main(argv: list[str]) -> int:
    """``k3s ...`` (or ``kubectl`` when called by that name, as k3s's symlink is)."""
    if Path(argv[0]).name == "kubectl":
        return cli_kubectl.main(argv)
    return run_main("k3s", argv, _dispatch)


def _dispatch(args: list[str]) -> int:
    command = args[0] if args else ""
    if command in ("--version", "-v", "version"):
        print(f"k3s version {version()} (simulated by fluxops)\ngo version go1.24.6")
        return 0
    if command == "kubectl":
        os.environ.setdefault("KUBECONFIG", str(host.path(host.KUBECONFIG)))
        return cli_kubectl.main(["kubectl", *args[1:]])
    if command in ("server", "agent") and len(args) > 1:
        raise unsupported("k3s", args, "flags: the simulator reads /etc/rancher/k3s/config.yaml only")
    config = read_config(host.path(host.CONFIG))
    if command == "server":
        return server(config)
    if command == "agent":
        return agent(config)
    raise unsupported("k3s", args)


def _token(data: Path) -> None:
    token_file = data / "server" / "token"
    if not token_file.is_file():
        ca_hash = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
        atomic_write(token_file, f"K10{ca_hash}::server:{secrets.token_hex(16)}\n", mode=0o600)
    node_token = data / "server" / "node-token"
    if not node_token.is_symlink():
        node_token.unlink(missing_ok=True)
        node_token.symlink_to("token")


def _seed(path: Path) -> str:
    if not path.is_file():
        atomic_write(path, secrets.token_hex(16) + "\n", mode=0o600)
    return path.read_text().strip()


def _node(state: Path, name: str, role: str) -> SimCluster:
    """The node's state, made on first start (k3s keeps its datastore across restarts)."""
    sim = SimCluster(state)
    if not sim.store.exists():
        factor = float(os.environ.get(FACTOR_ENV) or 1.0)
        try:
            settings = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
        except ValueError as exc:
            raise CliError(f"Error: ${SETTINGS_ENV} is not JSON: {exc}") from None
        sim = SimCluster.create(
            state, name=name, kubernetes=version(), time_factor=factor, role=role, settings=settings
        )
    with sim.store.transaction() as current:
        current.node["process"] = {"pid": os.getpid(), "started": time.time(), "node": name}
        current.node["kubernetes"] = version()
    return sim


def _notify_ready() -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")


def _run(sim: SimCluster, controllers: bool) -> int:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    _notify_ready()
    if controllers:
        sim.serve(stopped)
    else:
        stopped.wait()
    return 0


def server(config: dict[str, Any]) -> int:
    """``k3s server``."""
    data = host.path(host.DATA)
    _token(data)
    mode = int(str(config.get("write-kubeconfig-mode") or os.environ.get("K3S_KUBECONFIG_MODE") or "600"), 8)
    state = host.path(host.SERVER_STATE)
    sim = _node(state, node_name(config), "server")
    seed = _seed(data / "server" / "tls" / "simulator-seed")
    host.write_kubeconfig(host.path(host.KUBECONFIG), "https://127.0.0.1:6443", state, seed, mode)
    return _run(sim, controllers=True)


def agent(config: dict[str, Any]) -> int:
    """``k3s agent``."""
    url = str(config.get("server") or os.environ.get("K3S_URL") or "")
    token = os.environ.get("K3S_TOKEN") or str(config.get("token") or "")
    if not token and config.get("token-file"):
        token = Path(str(config["token-file"])).read_text().strip()
    if not url:
        raise CliError("Error: --server is required")
    if not token:
        raise CliError("Error: --token is required")
    data = host.path(host.DATA)
    state = host.path(host.AGENT_STATE)
    sim = _node(state, node_name(config), "agent")
    with sim.store.transaction() as current:
        current.node["server"] = url
        current.node["token_sha256"] = hashlib.sha256(token.encode()).hexdigest()
    seed = _seed(data / "agent" / "simulator-seed")
    host.write_kubeconfig(host.path(host.KUBELET_KUBECONFIG), "https://127.0.0.1:6444", state, seed, 0o600)
    return _run(sim, controllers=False)


def entry() -> None:
    """``python -m fluxops.sim.k3s``."""
    sys.exit(main(sys.argv))
