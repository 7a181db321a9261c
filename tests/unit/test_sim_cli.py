"""The simulator's k3s, kubectl and flux commands, run as processes on a host whose paths are under a
temporary prefix; real kubectl is the oracle where it works offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fluxops.layout.kustomize import kubectl as real_kubectl
from fluxops.sim import host
from fluxops.sim.cluster import SimCluster
from tests.unit.sim_testing import URL, commit, git_repository, kustomization, manifests

NODE = "sim-n1"
CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "c", "namespace": "demo"},
    "data": {"v": "1"},
}
NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}


class Host:
    """A host prefix with the simulator's commands; ``run`` returns (exit code, stdout, stderr)."""

    def __init__(self, root: Path, repo: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            host.PREFIX_ENV: str(root),
            "FLUXOPS_SIM_TIME_FACTOR": "120",
            "FLUXOPS_SIM_SETTINGS": json.dumps(
                {"git_rewrites": {URL: f"file://{repo}"}, "git_protocols": "file"}
            ),
        }
        self.env.pop("KUBECONFIG", None)

    def run(self, tool: str, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        done = subprocess.run([sys.executable, "-m", f"fluxops.sim.{tool}", *argv], input=stdin, env=self.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    def kubectl(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        return self.run("k3s", "kubectl", *argv, stdin=stdin)

    def file(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Host]:
    """A running ``k3s server`` (node-name sim-n1) with Flux installed, on a repository with one app."""
    repo = tmp_path / "repo"
    commit(repo, {"apps/all.yaml": manifests(NS, CM)})
    machine = Host(tmp_path / "host", repo)
    config = machine.file(host.CONFIG)
    config.parent.mkdir(parents=True)
    config.write_text(f'node-name: {NODE}\nwrite-kubeconfig-mode: "0644"\n')
    server = subprocess.Popen([sys.executable, "-m", "fluxops.sim.k3s", "server"], env=machine.env)
    try:
        kubeconfig = machine.file(host.KUBECONFIG)
        deadline = time.monotonic() + 30
        while not kubeconfig.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield machine
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def ready_status(machine: Host, kubeconfig: str = host.KUBECONFIG, name: str = NODE) -> str:
    jsonpath = 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
    return machine.kubectl(
        "--kubeconfig", str(machine.file(kubeconfig)), "get", "node", name, "-o", jsonpath
    )[1]


def test_k3s_server_writes_kubeconfig_and_token_and_its_node_turns_ready(node: Host) -> None:
    kubeconfig = node.file(host.KUBECONFIG)
    assert kubeconfig.stat().st_mode & 0o777 == 0o644  # write-kubeconfig-mode
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    token = node.file("/var/lib/rancher/k3s/server/token")
    assert token.stat().st_mode & 0o777 == 0o600 and token.read_text().startswith("K10")
    assert os.readlink(node.file(host.NODE_TOKEN)) == "token"
    deadline = time.monotonic() + 20
    while ready_status(node) != "True" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready_status(node) == "True"
    code, out, _ = node.kubectl("get", "nodes")
    assert code == 0 and out.splitlines()[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert out.splitlines()[1].split()[:3] == [NODE, "Ready", "control-plane,master"]


def test_create_secret_dry_run_prints_what_real_kubectl_prints(node: Host) -> None:
    argv = ["create", "secret", "generic", "sops-age", "-n", "flux-system",
            "--from-file=age.agekey=/dev/stdin", "--dry-run=client", "-o", "yaml"]  # fmt: skip
    offline = {"PATH": "/usr/bin:/bin", "KUBECONFIG": "/nonexistent"}
    oracle = subprocess.run([real_kubectl(), *argv], input="not a key", capture_output=True, text=True,
                            env=offline, check=True)  # fmt: skip
    code, out, _ = node.kubectl(*argv, stdin="not a key")
    assert code == 0 and yaml.safe_load(out) == yaml.safe_load(oracle.stdout)


def test_apply_wait_reconcile_and_get_as_kubectl_and_flux_print_them(node: Host, tmp_path: Path) -> None:
    assert node.run("flux", "install")[0] == 0
    sync = tmp_path / "sync.yaml"
    sync.write_text(manifests(git_repository(), kustomization("apps", "./apps")))
    code, out, err = node.kubectl("apply", "-f", str(sync))
    assert code == 0, err
    assert out.splitlines() == [
        "gitrepository.source.toolkit.fluxcd.io/flux-system created",
        "kustomization.kustomize.toolkit.fluxcd.io/apps created",
    ]
    code, out, err = node.kubectl(
        "wait", "kustomization/apps", "-n", "flux-system", "--for=condition=Ready", "--timeout=5m"
    )
    assert (code, out) == (0, "kustomization.kustomize.toolkit.fluxcd.io/apps condition met\n"), err
    code, _, err = node.run("flux", "reconcile", "kustomization", "apps", "--with-source")
    assert code == 0 and "✔ fetched revision main@sha1:" in err and "✔ applied revision main@sha1:" in err
    code, out, _ = node.run("flux", "get", "kustomizations", "-A")
    header, row = out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE"]
    assert row.split()[:5] == ["flux-system", "apps", row.split()[2], "False", "True"]
    code, out, _ = node.kubectl("get", "configmap", "c", "-n", "demo", "-o", "json")
    assert code == 0 and json.loads(out)["data"] == {"v": "1"}
    state = SimCluster(node.file(host.SERVER_STATE)).read()
    ks = state.get("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", "apps")
    assert (
        ks["status"]["lastHandledReconcileAt"]
        == ks["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"]
    )


def test_errors_read_as_kubectls_and_unsupported_argv_is_refused(node: Host) -> None:
    code, _, err = node.kubectl("get", "configmap", "nope", "-n", "default")
    assert (code, err.strip()) == (1, 'Error from server (NotFound): configmaps "nope" not found')
    bad = manifests(
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "p", "namespace": "default"},
        }
    )
    code, _, err = node.kubectl("apply", "-f", "-", stdin=bad)
    assert code == 1 and 'no matches for kind "IPAddressPool" in version "metallb.io/v1beta1"' in err
    code, _, err = node.kubectl("port-forward", "svc/x", "80")
    assert code == 2 and "unsupported by the simulator" in err
    code, _, err = node.run("flux", "trace", "deployment", "x")
    assert code == 2 and "unsupported by the simulator" in err


def test_a_node_that_does_not_answer(node: Host) -> None:
    assert node.run("faults", "--state", str(node.file(host.SERVER_STATE)), "unresponsive", "on")[0] == 0
    start = time.monotonic()
    code, _, err = node.kubectl("get", "nodes", "--request-timeout=60s")
    assert (
        code == 1 and err.strip() == "Unable to connect to the server: dial tcp 127.0.0.1:6443: i/o timeout"
    )
    assert 0.4 <= time.monotonic() - start < 10  # 60 s at the node's time factor of 120


def test_k3s_agent_needs_server_and_token_and_reads_its_own_node(tmp_path: Path) -> None:
    machine = Host(tmp_path / "agent", tmp_path)
    config = machine.file(host.CONFIG)
    config.parent.mkdir(parents=True)
    config.write_text("node-name: sim-a1\n")
    code, _, err = machine.run("k3s", "agent")
    assert (code, err.strip()) == (1, "Error: --server is required")
    config.write_text("node-name: sim-a1\nserver: https://10.250.0.2:6443\ntoken: K10abc::server:def\n")
    agent = subprocess.Popen([sys.executable, "-m", "fluxops.sim.k3s", "agent"], env=machine.env)
    try:
        deadline = time.monotonic() + 20
        while (
            ready_status(machine, host.KUBELET_KUBECONFIG, "sim-a1") != "True" and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert ready_status(machine, host.KUBELET_KUBECONFIG, "sim-a1") == "True"
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
    assert ready_status(machine, host.KUBELET_KUBECONFIG, "sim-a1") == "Unknown"  # stopped: not Ready


def test_flux_bootstrap_git_commits_the_sync_manifests_and_reconciles_them(
    node: Host, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True)
    seed = tmp_path / "seed"
    commit(seed, {"clusters/n1/apps/all.yaml": manifests(NS, CM)})
    subprocess.run(["git", "-C", str(seed), "push", "--quiet", str(remote), "main"], check=True)
    node.env["FLUXOPS_SIM_SETTINGS"] = "{}"
    state = node.file(host.SERVER_STATE)
    with SimCluster(state).store.transaction() as current:  # the node fetches URL from the bare repository
        current.node["settings"] = {"git_rewrites": {URL: f"file://{remote}"}, "git_protocols": "file"}
    argv = ["bootstrap", "git", f"--url={URL}", "--branch=main", "--path=clusters/n1", "--silent"]
    code, _, err = node.run("flux", *argv)
    assert code == 0, err
    files = subprocess.run(["git", "--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main"],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert {"clusters/n1/flux-system/gotk-components.yaml", "clusters/n1/flux-system/gotk-sync.yaml",
            "clusters/n1/flux-system/kustomization.yaml"} <= set(files)  # fmt: skip
    current = SimCluster(state).read()
    root = current.get("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", "flux-system")
    assert root["status"]["conditions"][0]["reason"] == "ReconciliationSucceeded"
    assert current.get("", "ConfigMap", "demo", "c") is not None  # what the cluster folder holds is applied
    assert current.get("", "Secret", "flux-system", "flux-system") is not None
    head = subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", "main"], capture_output=True, text=True
    ).stdout
    assert node.run("flux", *argv)[0] == 0  # again: the manifests are up to date, nothing new is pushed
    assert subprocess.run(["git", "--git-dir", str(remote), "rev-parse", "main"], capture_output=True,
                          text=True).stdout == head  # fmt: skip


def test_the_commands_reach_the_same_state_as_the_in_process_controllers(node: Host, tmp_path: Path) -> None:
    from tests.unit.sim_testing import node as in_process
    from tests.unit.sim_testing import settle

    repo = tmp_path / "repo"
    sim, clock = in_process(tmp_path / "inproc", repo)
    sim.apply([git_repository(), kustomization("apps", "./apps")])
    settle(sim, clock, 30)
    assert node.run("flux", "install")[0] == 0
    sync = manifests(git_repository(), kustomization("apps", "./apps"))
    assert node.kubectl("apply", "-f", "-", stdin=sync)[0] == 0
    assert (
        node.kubectl("wait", "ks/apps", "-n", "flux-system", "--for=condition=Ready", "--timeout=2m")[0] == 0
    )
    cli = SimCluster(node.file(host.SERVER_STATE)).read()
    local = sim.read()

    def summary(state):  # what Flux did, without the node's own objects and timestamps
        ks = state.get("kustomize.toolkit.fluxcd.io", "Kustomization", "flux-system", "apps")
        objects = sorted(k for k, o in state.objects.items() if (o["metadata"].get("labels") or {}).get(
            "kustomize.toolkit.fluxcd.io/name") == "apps")  # fmt: skip
        ready = ks["status"]["conditions"][0]
        return objects, ks["status"]["inventory"], ready["reason"], ready["message"]

    assert summary(cli) == summary(local)


def test_launchers_install_the_commands_as_k3s_kubectl_and_flux(tmp_path: Path) -> None:
    from fluxops.sim.launcher import script

    for tool, version in (("k3s", "v1.33.5+k3s1"), ("flux", "2.7.2")):
        (tmp_path / tool).write_text(script(tool, version))
        (tmp_path / tool).chmod(0o755)
    (tmp_path / "kubectl").symlink_to("k3s")
    env = {**os.environ, host.PREFIX_ENV: str(tmp_path / "host")}
    env.pop("KUBECONFIG", None)

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(tmp_path / argv[0]), *argv[1:]], env=env, capture_output=True, text=True)

    assert run("k3s", "--version").stdout.startswith("k3s version v1.33.5+k3s1")
    assert run("flux", "--version").stdout == "flux version 2.7.2\n"
    refused = run("kubectl", "get", "nodes")  # no server has run: nothing listens
    assert (
        refused.returncode == 1
        and "The connection to the server 127.0.0.1:6443 was refused" in refused.stderr
    )
