#!/usr/bin/python3
"""A stand-in for the k3s binary, for sandbox hosts where k3s cannot run (Python 3 standard library).

It does what playbooks/node.yaml relies on, the way k3s does it:

- ``k3s server`` (as the unit k3s.service runs it) reads /etc/rancher/k3s/config.yaml, keeps a join
  token in /var/lib/rancher/k3s/server/token (node-token links to it, 0600), writes the kubeconfig
  /etc/rancher/k3s/k3s.yaml (server https://127.0.0.1:6443, mode write-kubeconfig-mode or 0600), tells
  systemd it is ready and runs until stopped;
- ``k3s agent`` needs ``server`` (config.yaml or K3S_URL) and a token (K3S_TOKEN, config ``token`` or
  ``token-file``), writes /var/lib/rancher/k3s/agent/kubelet.kubeconfig, and runs until stopped;
- ``k3s kubectl get nodes|node NAME`` (also as ``kubectl``) shows this host's node, Ready one second
  after its server or agent started and while it runs; ``-o jsonpath=...`` gives the Ready condition's
  status; ``--kubeconfig`` must name an existing file;
- ``k3s --version`` prints the version it stands in for.

Every call appends its argv (never its environment) to /run/fluxops-stand-in/k3s-calls.jsonl; what a
running node is lives in /run/fluxops-stand-in/node.json (the token only as a sha256).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

VERSION = "v0.0.0+k3s0"  # replaced when the artifact folder is built
READY_AFTER = 1.0  # seconds from start until the node reports Ready
RUN_DIR = Path("/run/fluxops-stand-in")
CALLS = RUN_DIR / "k3s-calls.jsonl"
NODE = RUN_DIR / "node.json"
CONFIG = Path("/etc/rancher/k3s/config.yaml")
KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
DATA = Path("/var/lib/rancher/k3s")
KUBELET_KUBECONFIG = DATA / "agent" / "kubelet.kubeconfig"
READY_JSONPATH = 'type=="Ready"'


def record(argv: list[str]) -> None:
    """Append this call's argv to the calls log."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with CALLS.open("a") as log:
        log.write(json.dumps({"argv": argv, "pid": os.getpid(), "time": time.time()}) + "\n")


def read_config(path: Path = CONFIG) -> dict[str, object]:
    """The flat YAML k3s configs are written in: ``key: value`` and ``key:`` with ``- item`` lines."""
    config: dict[str, object] = {}
    if not path.is_file():
        return config
    key = None
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith((" ", "-")) and line.strip().startswith("-") and key is not None:
            items = config.setdefault(key, [])
            assert isinstance(items, list)
            items.append(unquote(line.strip()[1:].strip()))
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        config[key] = unquote(value.strip()) if value.strip() else []
    return config


def unquote(value: str) -> str:
    """A YAML scalar without its quotes."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def write(path: Path, text: str, mode: int) -> None:
    """``text`` to ``path`` atomically, with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.stand-in")
    temp.write_text(text)
    temp.chmod(mode)
    temp.replace(path)


def kubeconfig(server: str, seed: str) -> str:
    """A kubeconfig as k3s writes it; the credentials are derived from the node's seed."""

    def data(what: str) -> str:
        return base64.b64encode(f"stand-in {what} {seed}".encode()).decode()

    return (
        "apiVersion: v1\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {data('certificate authority')}\n"
        f"    server: {server}\n"
        "  name: default\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: default\n"
        "    user: default\n"
        "  name: default\n"
        "current-context: default\n"
        "kind: Config\n"
        "preferences: {}\n"
        "users:\n"
        "- name: default\n"
        "  user:\n"
        f"    client-certificate-data: {data('client certificate')}\n"
        f"    client-key-data: {data('client key')}\n"
    )


def seed(path: Path) -> str:
    """A random value kept in ``path`` (0600), made on first use."""
    if not path.is_file():
        write(path, secrets.token_hex(16) + "\n", 0o600)
    return path.read_text().strip()


def node_name(config: dict[str, object]) -> str:
    """The node's name: config ``node-name``, else the host name."""
    return str(config.get("node-name") or socket.gethostname())


def notify_ready() -> None:
    """sd_notify READY=1 from this (the unit's main) process."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")


def run_until_stopped(node: dict[str, object]) -> int:
    """Publish the node, tell systemd it is ready and wait for SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    write(NODE, json.dumps({**node, "pid": os.getpid(), "started": time.time()}), 0o644)
    notify_ready()
    while True:
        time.sleep(3600)


def server(config: dict[str, object]) -> int:
    """``k3s server``."""
    token_file = DATA / "server" / "token"
    if not token_file.is_file():
        ca_hash = hashlib.sha256(secrets.token_bytes(32)).hexdigest()
        write(token_file, f"K10{ca_hash}::server:{secrets.token_hex(16)}\n", 0o600)
    node_token = DATA / "server" / "node-token"
    if not node_token.is_symlink():
        node_token.unlink(missing_ok=True)
        node_token.symlink_to("token")
    mode = int(str(config.get("write-kubeconfig-mode") or os.environ.get("K3S_KUBECONFIG_MODE") or "600"), 8)
    creds = seed(DATA / "server" / "tls" / "stand-in-seed")
    write(KUBECONFIG, kubeconfig("https://127.0.0.1:6443", creds), mode)
    return run_until_stopped(
        {"name": node_name(config), "roles": "control-plane,master", "version": VERSION, "role": "server"}
    )


def agent(config: dict[str, object]) -> int:
    """``k3s agent``."""
    url = str(config.get("server") or os.environ.get("K3S_URL") or "")
    token = os.environ.get("K3S_TOKEN") or str(config.get("token") or "")
    if not token and config.get("token-file"):
        token = Path(str(config["token-file"])).read_text().strip()
    if not url:
        print("Error: --server is required", file=sys.stderr)
        return 1
    if not token:
        print("Error: --token is required", file=sys.stderr)
        return 1
    creds = seed(DATA / "agent" / "stand-in-seed")
    write(KUBELET_KUBECONFIG, kubeconfig("https://127.0.0.1:6444", creds), 0o600)
    node = {"name": node_name(config), "roles": "<none>", "version": VERSION, "role": "agent", "server": url}
    return run_until_stopped({**node, "token_sha256": hashlib.sha256(token.encode()).hexdigest()})


def running_node() -> dict[str, object] | None:
    """The node of the running server or agent, with ``ready``; None when none ever ran."""
    try:
        node = json.loads(NODE.read_text())
    except (OSError, ValueError):
        return None
    pid = int(node.get("pid", 0))
    try:
        alive = b"k3s" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        alive = False
    node["ready"] = alive and time.time() - float(node.get("started", 0)) >= READY_AFTER
    return node


def kubectl(args: list[str]) -> int:
    """``kubectl get nodes`` / ``get node NAME`` with -o jsonpath (Ready status), -o name or a table."""
    words: list[str] = []
    config_path = os.environ.get("KUBECONFIG") or str(KUBECONFIG)
    output = ""
    headers = True
    rest = iter(args)
    for arg in rest:
        if arg in ("--kubeconfig", "-o", "--output"):
            value = next(rest, "")
            config_path, output = (value, output) if arg == "--kubeconfig" else (config_path, value)
        elif arg.startswith("--kubeconfig="):
            config_path = arg.split("=", 1)[1]
        elif arg.startswith(("-o", "--output=")):
            output = arg.split("=", 1)[1] if arg.startswith("--output=") else arg[2:]
        elif arg == "--no-headers":
            headers = False
        else:
            words.append(arg)
    if not Path(config_path).is_file():
        print(f"error: stat {config_path}: no such file or directory", file=sys.stderr)
        return 1
    if len(words) < 2 or words[0] != "get" or words[1] not in ("nodes", "node", "no"):
        print("stand-in kubectl: only `get nodes` and `get node NAME` are emulated", file=sys.stderr)
        return 1
    node = running_node()
    nodes = [node] if node else []
    if len(words) > 2:
        nodes = [n for n in nodes if n["name"] == words[2]]
        if not nodes:
            print(f'Error from server (NotFound): nodes "{words[2]}" not found', file=sys.stderr)
            return 1
    if not nodes:
        print("No resources found", file=sys.stderr)
        return 0
    if output.startswith("jsonpath="):
        if READY_JSONPATH not in output:
            print(f"stand-in kubectl: jsonpath {output[9:]} is not emulated", file=sys.stderr)
            return 1
        sys.stdout.write(" ".join("True" if n["ready"] else "False" for n in nodes))
        return 0
    if output == "name":
        print("\n".join(f"node/{n['name']}" for n in nodes))
        return 0
    rows = [("NAME", "STATUS", "ROLES", "AGE", "VERSION")] if headers else []
    for n in nodes:
        rows.append((str(n["name"]), "Ready" if n["ready"] else "NotReady", str(n["roles"]), "1m", VERSION))
    for row in rows:
        print("   ".join(row))
    return 0


def main(argv: list[str]) -> int:
    """Dispatch on the command (or on the name called, for the kubectl link)."""
    record(argv)
    called = Path(argv[0]).name
    args = argv[1:]
    if called == "kubectl":
        return kubectl(args)
    if called in ("crictl", "ctr"):
        print(f"stand-in k3s: {called} is not emulated", file=sys.stderr)
        return 1
    command = args[0] if args else ""
    if command in ("--version", "-v", "version"):
        print(f"k3s version {VERSION} (stand-in)\ngo version go1.24.6")
        return 0
    if command == "kubectl":
        return kubectl(args[1:])
    if command == "server":
        return server(read_config())
    if command == "agent":
        return agent(read_config())
    print(f"stand-in k3s: {' '.join(args) or '(no command)'} is not emulated", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
