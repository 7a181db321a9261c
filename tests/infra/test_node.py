"""testinfra checks of a node that playbooks/node.yaml brought up: kernel modules and settings, swap,
the k3s binary, config, unit and service, the node Ready, and (by role) the join token, the flux
CLI, and the cluster's kubeconfig fetched to this machine (0600, pointing at the server's address).

Against any hosts, with testinfra's own options; what to expect (cluster, role, addresses, disabled
components, versions) comes from the inventory in FLUXOPS_INVENTORY (else the project's, from
invoke.yaml), the kubeconfig from ~/.kube:

    FLUXOPS_INVENTORY=inventory/hosts.yaml pytest tests/infra/test_node.py --hosts=ssh://n5 --ssh-config=FILE

``invoke node.verify --host n5`` runs exactly that, with an ssh_config written from the inventory.
Without --hosts, the module brings the sandbox hosts up as one cluster (the first a server, the
other its agent, with the simulator's k3s and flux) through node.yaml, checks them, and takes it all
off again.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import testinfra
import yaml

from fluxops import inventory as inv
from fluxops import node as nodes
from fluxops import settings
from tests import node_support

pytestmark = pytest.mark.ssh

CONTROLLER_KUBE = Path.home() / ".kube"  # read at import: each test gets a scratch $HOME
SANDBOX_ROLES = ("server", "agent")
SETTINGS_FILE = node_support.REPO / "invoke.yaml"


@dataclass(frozen=True)
class Node:
    """A host to check and what node.yaml should have made of it."""

    host: testinfra.host.Host
    name: str
    cluster: str
    role: str
    address: str
    server_address: str
    disable: tuple[str, ...]
    k3s_version: str
    flux_version: str
    limits: dict[str, int]
    kube_dir: Path

    @property
    def unit(self) -> str:
        return "k3s" if self.role == "server" else "k3s-agent"

    @property
    def kubeconfig(self) -> str:
        """The kubeconfig this node reads its own Node with."""
        if self.role == "server":
            return "/etc/rancher/k3s/k3s.yaml"
        return "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"


def _inventory() -> inv.Inventory:
    """The inventory that describes the hosts given with --hosts."""
    config = (yaml.safe_load(SETTINGS_FILE.read_text()) or {}).get("fluxops")
    resolved = settings.load(config, node_support.REPO)
    path = Path(os.environ.get(nodes.INVENTORY_ENV) or resolved.inventory)
    clusters = json.loads(os.environ[nodes.CLUSTERS_ENV]) if nodes.CLUSTERS_ENV in os.environ else None
    return inv.load(path, clusters=clusters or resolved.clusters, root=node_support.REPO)


def _name(spec: str) -> str:
    """The inventory name in a testinfra host spec (``ssh://user@n5:22`` -> ``n5``)."""
    return (urlsplit(spec).hostname or spec) if "://" in spec else spec


def _specs(config: pytest.Config) -> list[str]:
    """The host specs to check (for the sandbox: its roles)."""
    hosts = config.option.hosts
    return hosts.split(",") if hosts else list(SANDBOX_ROLES)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every check on every host given (or on the sandbox's server and agent)."""
    if "node_spec" in metafunc.fixturenames:
        metafunc.parametrize("node_spec", _specs(metafunc.config), scope="module")


def _expected(host: testinfra.host.Host, inventory: inv.Inventory, name: str, kube_dir: Path) -> Node:
    entry = inventory.host(name)
    server = nodes.server_of(inventory, entry.cluster)
    wanted = nodes.play_vars(entry.vars, node_support.REPO)
    return Node(
        host=host,
        name=name,
        cluster=entry.cluster,
        role=entry.role,
        address=entry.address,
        server_address=server.address,
        disable=tuple(entry.vars.get("k3s_disable", ())),
        k3s_version=str(entry.vars["k3s_version"]),
        flux_version=str(wanted["flux_cli_version"]).removeprefix("v"),
        limits={name: int(wanted[var]) for name, var in node_support.KERNEL_LIMITS.items()},
        kube_dir=kube_dir,
    )


@dataclass(frozen=True)
class SandboxCluster:
    """The sandbox hosts brought up by node.yaml as one cluster."""

    inventory: inv.Inventory
    ssh_config: Path
    kube_dir: Path


@pytest.fixture(scope="module")
def sandbox_cluster(sandbox_env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxCluster]:
    """Without --hosts: the sandbox hosts as a server and its agent, brought up by node.yaml."""
    base = tmp_path_factory.mktemp("node-checks")
    built = node_support.build_artifacts(base / "artifacts", sandbox_env.inventory)
    path = node_support.write_inventory(
        base / "cluster.yaml",
        sandbox_env.inventory_path,
        pair=True,
        variables={"k3s_airgap_dir": str(built.folder)},
    )
    inventory = inv.load(path)
    home = base / "home"
    node_support.raise_kernel_limits()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        node_support.reset(inventory.hosts)
        try:
            report, text = node_support.run(path)
            assert report.failed_hosts == [], text
            yield SandboxCluster(inventory, sandbox_env.ssh_config, home / ".kube")
        finally:
            node_support.reset(inventory.hosts)


def _node(spec: str, request: pytest.FixtureRequest) -> Node:
    options = request.config.option
    if options.hosts:
        host = testinfra.get_host(
            spec,
            connection=options.connection,
            ssh_config=options.ssh_config,
            ssh_identity_file=options.ssh_identity_file,
            sudo=options.sudo,
            sudo_user=options.sudo_user,
        )
        return _expected(host, _inventory(), _name(spec), CONTROLLER_KUBE)
    cluster: SandboxCluster = request.getfixturevalue("sandbox_cluster")
    entry = next(h for h in cluster.inventory.hosts if h.role == spec)
    host = testinfra.get_host(f"ssh://{entry.name}", ssh_config=str(cluster.ssh_config))
    return _expected(host, cluster.inventory, entry.name, cluster.kube_dir)


@pytest.fixture(scope="module")
def node(node_spec: str, request: pytest.FixtureRequest) -> Node:
    """A node of either role."""
    return _node(node_spec, request)


def _yaml(node: Node, path: str) -> dict:
    return yaml.safe_load(node.host.file(path).content_string) or {}


def _mode(node: Node, path: str) -> str:
    """Octal mode and owner of ``path`` (links followed)."""
    return node.host.check_output("stat -L -c '%%a %%U' %s", path)


# --- every node ---------------------------------------------------------------------------------


def test_kernel_modules_load_at_boot_and_are_in_effect(node: Node) -> None:
    conf = node.host.file("/etc/modules-load.d/k3s.conf")
    assert conf.is_file and conf.mode == 0o644
    assert conf.content_string.split() == ["br_netfilter", "overlay"]
    assert node.host.file("/proc/sys/net/bridge").is_directory, "br_netfilter is not in effect"
    assert "overlay" in node.host.file("/proc/filesystems").content_string.split()


def test_kernel_settings_are_persisted_and_live(node: Node) -> None:
    wanted = {"net.ipv4.ip_forward": 1, "net.bridge.bridge-nf-call-iptables": 1, **node.limits}
    conf = node.host.file("/etc/sysctl.d/90-k3s.conf").content_string
    persisted = {k: int(v) for k, v in (ln.split(" = ", 1) for ln in conf.splitlines() if " = " in ln)}
    assert set(persisted) == set(wanted)
    for name, value in wanted.items():
        live = node.host.sysctl(name)
        if name in node.limits:  # minimums: a kernel that allows more keeps its value
            assert live >= value and persisted[name] == live, name
        else:
            assert live == persisted[name] == value, name


def test_swap_is_off_now_and_at_boot(node: Node) -> None:
    assert node.host.file("/proc/swaps").content_string.splitlines()[1:] == []
    active = node.host.run("grep -Ec %s /etc/fstab", r"^[^#[:space:]]\S*\s+\S+\s+swap(\s|$)")
    assert active.stdout.strip() == "0"


def test_k3s_binary_is_the_pinned_version(node: Node) -> None:
    binary = node.host.file("/usr/local/bin/k3s")
    assert binary.is_file and binary.mode == 0o755 and binary.user == "root"
    assert f"k3s version {node.k3s_version}" in node.host.check_output("/usr/local/bin/k3s --version")


def test_k3s_config_names_the_node_and_its_role_settings(node: Node) -> None:
    path = "/etc/rancher/k3s/config.yaml"
    assert _mode(node, path) == "600 root"
    config = _yaml(node, path)
    assert config["node-name"] == node.name
    if node.role == "server":
        assert node.address in config["tls-san"]
        assert sorted(config.get("disable", [])) == sorted(node.disable)
        assert str(config["write-kubeconfig-mode"]) == "0600"
        assert "server" not in config
    else:
        assert config["server"] == f"https://{node.server_address}:6443"
        assert "disable" not in config and "tls-san" not in config


def test_k3s_service_runs_from_its_unit(node: Node) -> None:
    unit = node.host.file(f"/etc/systemd/system/{node.unit}.service")
    assert unit.mode == 0o644
    assert f"ExecStart=/usr/local/bin/k3s \\\n    {node.role}\n" in unit.content_string
    assert f"EnvironmentFile=-/etc/systemd/system/{node.unit}.service.env" in unit.content_string
    service = node.host.service(node.unit)
    assert service.is_enabled and service.is_running
    env = f"/etc/systemd/system/{node.unit}.service.env"
    assert _mode(node, env) == "600 root"
    tokens = node.host.run("grep -c '^K3S_TOKEN=.' %s", env).stdout.strip()  # counted, never printed
    assert tokens == ("1" if node.role == "agent" else "0")


def test_node_is_ready(node: Node) -> None:
    status = node.host.check_output(
        "/usr/local/bin/k3s kubectl --kubeconfig %s get node %s -o %s",
        node.kubeconfig,
        node.name,
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    )
    assert status == "True"


# --- what differs between a server and an agent -----------------------------------------------


def test_join_token_is_readable_by_root_only(node: Node) -> None:
    token = "/var/lib/rancher/k3s/server/node-token"
    if node.role == "server":
        assert _mode(node, token) == "600 root"
        assert node.host.run("test -s %s", token).rc == 0
    else:  # an agent holds its server's token in its unit's environment file only
        assert not node.host.file("/var/lib/rancher/k3s/server").exists


def test_flux_cli_is_the_pinned_version_on_servers(node: Node) -> None:
    flux = node.host.file("/usr/local/bin/flux")
    if node.role != "server":
        assert not flux.exists, "node.yaml puts the flux CLI on servers only"
        return
    assert flux.is_file and flux.mode == 0o755 and flux.user == "root"
    assert node.host.check_output("/usr/local/bin/flux --version") == f"flux version {node.flux_version}"


def test_the_clusters_kubeconfig_on_this_machine_points_at_its_server(node: Node) -> None:
    local = node.kube_dir / f"{node.cluster}.yaml"
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    fetched = yaml.safe_load(local.read_text())
    assert [c["cluster"]["server"] for c in fetched["clusters"]] == [f"https://{node.server_address}:6443"]
    if node.role == "server":
        on_node = _yaml(node, "/etc/rancher/k3s/k3s.yaml")
        assert [c["cluster"]["server"] for c in on_node["clusters"]] == ["https://127.0.0.1:6443"]
        assert _mode(node, "/etc/rancher/k3s/k3s.yaml") == "600 root"
        assert fetched["users"] == on_node["users"], "the copy carries the node's credentials"
    else:
        assert not node.host.file("/etc/rancher/k3s/k3s.yaml").exists
