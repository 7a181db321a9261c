"""playbooks/node.yaml on the sandbox hosts, brought up as one cluster: the first host its server, the
other its agent (the simulator's k3s and flux from an artifact folder, as for an air-gapped node).

Four steps on both at once, check mode leaving the hosts' overlay upper directories as they were,
diffs, the join token kept off every command line and out of the output, a node dropping off the
network mid-run, invoke node.up / node.verify and the testinfra checks through their command lines,
and the download path (releases served from this machine at the host's end of its link).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import yaml

from fluxops import inventory as inv
from fluxops import sandbox
from fluxops.runner import recap
from fluxops.runner.results import Status, TaskResult
from fluxops.sandbox import network
from fluxops.sim import artifacts
from tests import node_support
from tests.node_support import counts, on_host, run

pytestmark = pytest.mark.ssh
REPO = node_support.REPO
TOKEN = "/var/lib/rancher/k3s/server/token"


@dataclass(frozen=True)
class Lab:
    """The sandbox hosts as one cluster, and what the tests need to look at them."""

    source: Path  # the sandbox fixture's inventory
    pair: Path  # inventory: one cluster, a server and an agent
    clusters: Path  # inventory: the sandbox's own clusters, one server each
    inventory: inv.Inventory
    server: inv.Host
    agent: inv.Host
    built: artifacts.Artifacts
    state_dir: Path
    ssh_config: Path

    @property
    def hosts(self) -> tuple[inv.Host, ...]:
        return (self.server, self.agent)


@pytest.fixture(scope="module")
def lab(sandbox_env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Inventories and artifacts for the module; the hosts are cleaned up after its last test."""
    base = tmp_path_factory.mktemp("node-up")
    built = node_support.build_artifacts(base / "artifacts", sandbox_env.inventory)
    variables = {"k3s_airgap_dir": str(built.folder)}
    pair = node_support.write_inventory(
        base / "pair.yaml", sandbox_env.inventory_path, pair=True, variables=variables
    )
    clusters = node_support.write_inventory(
        base / "clusters.yaml", sandbox_env.inventory_path, pair=False, variables=variables
    )
    inventory = inv.load(pair)
    server = next(h for h in inventory.hosts if h.role == "server")
    agent = next(h for h in inventory.hosts if h.role == "agent")
    found = Lab(
        sandbox_env.inventory_path,
        pair,
        clusters,
        inventory,
        server,
        agent,
        built,
        sandbox_env.state_dir,
        sandbox_env.ssh_config,
    )
    node_support.raise_kernel_limits()
    try:
        yield found
    finally:
        node_support.reset(inventory.hosts)


@pytest.fixture
def fresh(lab: Lab) -> Lab:
    """The hosts without anything node.yaml puts there."""
    node_support.reset(lab.hosts)
    return lab


@pytest.fixture
def up(fresh: Lab) -> Lab:
    """The hosts brought up by one run of node.yaml."""
    report, text = run(fresh.pair)
    assert report.failed_hosts == [], text
    return fresh


def kubeconfig(lab: Lab) -> Path:
    return Path.home() / ".kube" / f"{lab.server.cluster}.yaml"


def calls(host: inv.Host) -> list[list[str]]:
    """The argv of every call of the simulator's k3s on ``host`` (its calls log)."""
    text = on_host(host, "cat /run/fluxops-stand-in/k3s-calls.jsonl 2>/dev/null || true")
    return [json.loads(line)["argv"] for line in text.splitlines()]


def ready(host: inv.Host, kubeconfig_path: str) -> str:
    return on_host(
        host,
        f"/usr/local/bin/k3s kubectl --kubeconfig {kubeconfig_path} get node {host.name} "
        "-o 'jsonpath={.status.conditions[?(@.type==\"Ready\")].status}'",
    )


# --- check mode, four steps, diffs ----------------------------------------------------------------


def test_check_changes_nothing_on_fresh_hosts_and_shows_every_diff(fresh: Lab) -> None:
    uppers = {h.name: node_support.upper_dir(fresh.state_dir, h.name) for h in fresh.hosts}
    before = {name: node_support.snapshot(path) for name, path in uppers.items()}
    assert all(before.values())
    report, text = run(fresh.pair, check=True, diff=True)
    assert report.failed_hosts == [], text
    assert all(changed > 0 for changed, _, _ in counts(report).values()), text
    assert {name: node_support.snapshot(path) for name, path in uppers.items()} == before
    assert not kubeconfig(fresh).exists()
    for line in (
        "+++ /etc/rancher/k3s/config.yaml (after)",
        f"+node-name: {fresh.server.name}",
        f"+  - {fresh.server.address}",
        f"+node-name: {fresh.agent.name}",
        f"+server: https://{fresh.server.address}:6443",
        "+++ /etc/systemd/system/k3s-agent.service (after)",
        "+EnvironmentFile=-/etc/systemd/system/k3s.service.env",
        "+net.ipv4.ip_forward = 1",
        "--- /etc/systemd/system/k3s-agent.service.env: write /etc/systemd/system/k3s-agent.service.env "
        "(0600) (content not shown: it holds the join token)",
    ):
        assert line in text, line
    k3s_version = node_support.versions(fresh.inventory)[0]
    assert f"install k3s {k3s_version} from {fresh.built.folder / fresh.built.k3s_name}" in text


def test_four_steps_on_a_server_and_an_agent_at_once(fresh: Lab) -> None:
    names = {h.name for h in fresh.hosts}
    for check, changes in ((True, True), (False, True), (True, False), (False, False)):
        report, text = run(fresh.pair, check=check)
        assert set(report.stats) == names
        for host, (changed, failed, unreachable) in counts(report).items():
            assert (failed, unreachable) == (0, 0), text
            assert (changed > 0) is changes, f"check={check} {host}: {changed} changed\n{text}"
    assert ready(fresh.server, "/etc/rancher/k3s/k3s.yaml") == "True"
    assert ready(fresh.agent, "/var/lib/rancher/k3s/agent/kubelet.kubeconfig") == "True"
    assert ["/usr/local/bin/k3s", "server"] in calls(fresh.server)
    assert ["/usr/local/bin/k3s", "agent"] in calls(fresh.agent)
    # the agent runs with its server's token: compared by hash, never shown
    token = on_host(fresh.server, f"cat {TOKEN}").strip()
    agent_node = node_support.node_state(fresh.agent, "agent")["node"]
    assert agent_node["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert agent_node["server"] == f"https://{fresh.server.address}:6443"
    local = kubeconfig(fresh)
    assert local.stat().st_mode & 0o777 == 0o600
    servers = [c["cluster"]["server"] for c in yaml.safe_load(local.read_text())["clusters"]]
    assert servers == [f"https://{fresh.server.address}:6443"]
    images = f"/var/lib/rancher/k3s/agent/images/{next(n for n in fresh.built.sums if 'images' in n)}"
    assert on_host(fresh.agent, f"sha256sum < {images}").split()[0] in fresh.built.sums.values()


def test_a_drifted_config_shows_its_diff_and_restarts_k3s(up: Lab) -> None:
    path = "/etc/rancher/k3s/config.yaml"
    on_host(up.server, f"sed -i '/^tls-san:/,+1d' {path}")
    starts = calls(up.server).count(["/usr/local/bin/k3s", "server"])
    report, text = run(up.pair, diff=True)
    assert report.failed_hosts == [], text
    assert counts(report)[up.agent.name][0] == 0, text
    assert f"--- {path} (before)\n+++ {path} (after)\n" in text
    assert f"+tls-san:\n+  - {up.server.address}\n" in text
    assert "restart k3s" in text
    assert calls(up.server).count(["/usr/local/bin/k3s", "server"]) == starts + 1
    assert ready(up.server, "/etc/rancher/k3s/k3s.yaml") == "True"
    report, _ = run(up.pair)
    assert report.changed == 0


# --- the join token -------------------------------------------------------------------------------


def test_the_join_token_never_shows_in_a_command_line_or_the_output(fresh: Lab) -> None:
    with node_support.command_lines() as seen:
        report, text = run(fresh.pair, diff=True)
    assert report.failed_hosts == [], text
    token = on_host(fresh.server, f"cat {TOKEN}").strip()
    assert token.startswith("K10") and len(token) > 40
    # processes of both hosts were seen: the server's and the agent's k3s, as their units run them
    for role in (b"server", b"agent"):
        assert [c for c in seen if b"/usr/local/bin/k3s\x00" + role + b"\x00" in c], role
    assert not [c for c in seen if token.encode() in c or b"K3S_TOKEN" in c]
    for host in fresh.hosts:
        assert not [argv for argv in calls(host) if any(token in a for a in argv)]
    assert token not in text
    assert token not in recap.as_json(report)


# --- a node dropping off mid-run ------------------------------------------------------------------


def test_a_node_that_drops_mid_run_fails_cleanly_the_other_finishes_and_a_rerun_converges(
    fresh: Lab,
) -> None:
    veth = next(s.veth for s in sandbox.read_state(fresh.state_dir) if s.name == fresh.agent.name)
    dropped = threading.Event()

    def drop(result: TaskResult) -> None:
        if result.host == fresh.agent.name and result.status is Status.CHANGED and not dropped.is_set():
            dropped.set()
            network.set_link(veth, up=False)

    try:
        report, text = run(fresh.pair, timeout=30, on_result=drop)
    finally:
        network.set_link(veth, up=True)
    assert dropped.is_set()
    assert report.failed_hosts == [fresh.agent.name], text
    assert counts(report)[fresh.agent.name][2] == 1
    [failure] = report.failures()
    assert failure.status is Status.UNREACHABLE and failure.host == fresh.agent.name
    assert f"fatal: [{fresh.agent.name}]" in text and "UNREACHABLE!" in text
    changed, failed, unreachable = counts(report)[fresh.server.name]
    assert changed > 0 and (failed, unreachable) == (0, 0)
    assert ready(fresh.server, "/etc/rancher/k3s/k3s.yaml") == "True"
    assert kubeconfig(fresh).exists(), "the server finished: its kubeconfig was fetched"

    report, text = run(fresh.pair)
    assert report.failed_hosts == [], text
    assert counts(report)[fresh.agent.name][0] > 0
    assert ready(fresh.agent, "/var/lib/rancher/k3s/agent/kubelet.kubeconfig") == "True"
    report, text = run(fresh.pair)
    assert report.changed == 0, text


# --- through the command lines --------------------------------------------------------------------


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "invoke", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_node_up_then_the_testinfra_checks_through_their_command_lines(fresh: Lab) -> None:
    result = invoke("node.up", "--cluster", fresh.server.cluster, "--inventory", str(fresh.pair))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PLAY RECAP" in result.stdout

    hosts = ",".join(f"ssh://{h.name}" for h in fresh.hosts)
    pytest_argv = [sys.executable, "-m", "pytest", "tests/infra/test_node.py", "-p", "no:cacheprovider"]
    checks = subprocess.run(
        [*pytest_argv, "-q", f"--hosts={hosts}", f"--ssh-config={fresh.ssh_config}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FLUXOPS_INVENTORY": str(fresh.pair)},
    )
    assert checks.returncode == 0, checks.stdout + checks.stderr
    assert "20 passed" in checks.stdout and "skipped" not in checks.stdout

    verified = invoke("node.verify", "--host", fresh.agent.name, "--inventory", str(fresh.pair))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "10 passed" in verified.stdout

    on_host(fresh.agent, "chmod 0644 /etc/rancher/k3s/config.yaml")
    broken = invoke("node.verify", "--host", fresh.agent.name, "--inventory", str(fresh.pair))
    assert broken.returncode == 1
    assert "FAILED tests/infra/test_node.py::test_k3s_config_names_the_node_and_its_role_settings" in (
        broken.stdout
    )
    # node.up for an agent brings its server along (the token is read there); --check changes nothing
    result = invoke(
        "node.up", "--host", fresh.agent.name, "--inventory", str(fresh.pair), "--check", "--json"
    )
    assert result.returncode == 0, result.stderr
    recap_ = json.loads(result.stdout)["recap"]
    assert {h: s["changed"] for h, s in recap_.items()} == {fresh.server.name: 0, fresh.agent.name: 2}
    assert on_host(fresh.agent, "stat -c %a /etc/rancher/k3s/config.yaml").strip() == "644"


def test_node_up_takes_one_host_or_one_cluster(fresh: Lab) -> None:
    second = inv.load(fresh.clusters).hosts[1]
    result = invoke(
        "node.up", "--cluster", second.cluster, "--inventory", str(fresh.clusters), "--check", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)["recap"]) == [second.name]
    both = invoke(
        "node.up", "--host", second.name, "--cluster", second.cluster, "--inventory", str(fresh.clusters)
    )
    assert both.returncode == 2 and "exactly one of --host and --cluster" in both.stderr  # usage
    unknown = invoke("node.up", "--host", "no-such-node", "--inventory", str(fresh.clusters), "--check")
    assert unknown.returncode == 1 and "unknown host 'no-such-node'" in unknown.stderr


# --- downloading the releases ---------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No request log on stderr."""


@pytest.fixture
def releases(fresh: Lab, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The simulator's k3s and flux as release downloads (GitHub's layout), served at each host's end
    of its link; each host's release URLs."""
    k3s_version, flux_version = node_support.versions(fresh.inventory)
    root = tmp_path / "releases"
    k3s_release = root / "k3s" / k3s_version
    flux_release = root / "flux" / f"v{flux_version.removeprefix('v')}"
    for folder in (k3s_release, flux_release):
        folder.mkdir(parents=True)
    for path in fresh.built.folder.iterdir():
        if "images" not in path.name:
            folder = flux_release if path.name.startswith("flux_") else k3s_release
            (folder / path.name).write_bytes(path.read_bytes())
    servers = []
    urls: dict[str, str] = {}
    for state in sandbox.read_state(fresh.state_dir):
        server = http.server.ThreadingHTTPServer(
            (state.machine_address, 0), partial(_Quiet, directory=str(root))
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        urls[state.name] = f"http://{state.machine_address}:{server.server_address[1]}"
    try:
        yield urls
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_without_an_artifact_folder_the_nodes_download_the_pinned_releases(
    fresh: Lab, releases: dict[str, str], tmp_path: Path
) -> None:
    host_vars = {
        name: {"k3s_release_url": f"{url}/k3s", "flux_release_url": f"{url}/flux"}
        for name, url in releases.items()
    }
    online = node_support.write_inventory(
        tmp_path / "online.yaml", fresh.source, pair=True, variables={}, host_vars=host_vars
    )
    report, text = run(online)
    assert report.failed_hosts == [], text
    assert f"from {releases[fresh.server.name]}/k3s/" in text and "sha256 from sha256sum-" in text
    for host in fresh.hosts:
        assert on_host(host, "sha256sum < /usr/local/bin/k3s").split()[0] == fresh.built.k3s_sha256
    assert on_host(fresh.server, "sha256sum < /usr/local/bin/flux").split()[0] == fresh.built.flux_sha256
    report, text = run(online)
    assert report.changed == 0, text
