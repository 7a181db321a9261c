"""The simulator's CLIs over SSH on a sandbox host give what the in-process rehearsal gives.

A sandbox host is brought up as a k3s server by playbooks/node.yaml from an artifact folder holding
the simulator's ``k3s`` and ``flux`` (``kubectl`` linked to k3s as k3s' installer links it on a node
that has none). Over SSH the test then does what bootstrap does on a real node: ``kubectl apply -f
-``, the ``sops-age`` Secret from stdin (``kubectl create secret generic
--from-file=age.agekey=/dev/stdin --dry-run=client -o yaml | kubectl apply -f -``), ``flux install``,
``flux bootstrap git`` into a repository on the host (over SSH to the host's own address with a
deploy key; the node's source-controller fetches it the same way), ``flux reconcile kustomization
--with-source``, ``flux get kustomizations -A`` and ``kubectl get kustomizations -A -o json``;
``fluxops.sim.rehearse`` reconciles the same commit in-process, and both must agree on the
Kustomizations, their Ready states, reasons and messages, and the revision. The age key travels on
stdin only: it is in no command line on this machine (the host's processes included) while it is
handed over, and in no file of the host's overlay upper directory but the simulator's 0600 state.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml

from fluxops import inventory as inv
from fluxops.masking import Secret
from fluxops.secrets.sops import binary as sops_binary
from fluxops.shell import RemoteShell, Result
from fluxops.sim import kustomization as sim_ks
from fluxops.sim import rehearse
from fluxops.sim.cluster import SimCluster
from tests import node_support

pytestmark = pytest.mark.ssh

CLUSTER = "fleet"
BRANCH = "main"
REMOTE = "/srv/git/fleet.git"  # the bare repository on the host, reached over SSH at the host's address
DEPLOY_KEY = "/root/.ssh/fleet-deploy"  # bootstrap's --private-key-file, authorized for root on the host
SIM_STATE = "var/lib/rancher/k3s/server/sim"  # the simulated node's state, in the host's upper dir
TIME_FACTOR = 120  # the node runs this many times faster than real time
MACHINE_KUBECTL = "/usr/bin/kubectl"


@dataclass(frozen=True)
class Node:
    """A sandbox host brought up as a k3s server running the simulator."""

    host: inv.Host
    shell: RemoteShell
    upper: Path
    ssh_config: Path  # the sandbox's, for git over SSH
    key: Secret  # the age identity the tree's Secret is encrypted to

    @property
    def url(self) -> str:
        """The repository's URL as bootstrap and the node's source-controller use it: SSH to the host."""
        return f"ssh://root@{self.host.address}:{self.host.port}{REMOTE}"

    def run(self, script: str, *, stdin: Secret | str | None = None, check: bool = True) -> Result:
        """``sh -c script`` on the host as root (a login shell's PATH: /usr/local/bin first)."""
        return self.shell.run(["sh", "-c", script], stdin=stdin, timeout=180, check=check)


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@fleet.invalid",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@fleet.invalid"}  # fmt: skip
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **identity, **(env or {})},
        timeout=120,
    )
    return done.stdout


def _dump(path: Path, *docs: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def _phase(name: str, path: str, *, wait: bool, depends: str = "", decrypt: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"interval": "10m", "retryInterval": "1m", "timeout": "2m", "path": path,
                            "prune": True, "wait": wait,
                            "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}  # fmt: skip
    if depends:
        spec["dependsOn"] = [{"name": depends}]
    if decrypt:
        spec["decryption"] = {"provider": "sops", "secretRef": {"name": "sops-age"}}
    meta = {"name": name, "namespace": "flux-system"}
    return {"apiVersion": f"{sim_ks.GROUP}/v1", "kind": "Kustomization", "metadata": meta, "spec": spec}


def make_repository(repo: Path, recipient: str) -> None:
    """A Flux tree for cluster ``fleet``: infrastructure (a Namespace, wait), apps (a ConfigMap and a
    SOPS-encrypted Secret, after infrastructure) and extras (a custom resource of a kind no CRD serves:
    fails as Flux fails)."""
    folder = repo / "clusters" / CLUSTER
    _dump(folder / "infrastructure.yaml", _phase("infrastructure", "./infrastructure", wait=True))
    _dump(folder / "apps.yaml", _phase("apps", "./apps", wait=False, depends="infrastructure", decrypt=True))
    _dump(folder / "extras.yaml", _phase("extras", "./extras", wait=False))
    _dump(repo / "infrastructure" / "namespace.yaml", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": "demo"}})  # fmt: skip
    _dump(repo / "infrastructure" / "kustomization.yaml", {"resources": ["namespace.yaml"]})
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "demo"},
              "data": {"greeting": "hello"}}  # fmt: skip
    _dump(repo / "apps" / "configmap.yaml", config)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": "demo"},
              "stringData": {"token": "s3cret-value"}}  # fmt: skip
    plain = repo / "apps" / "secret.yaml"
    _dump(plain, secret)
    encrypted = subprocess.run(
        [
            sops_binary(),
            "--encrypt",
            "--age",
            recipient,
            "--encrypted-regex",
            "^(data|stringData)$",
            str(plain),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HOME": str(repo.parent)},
        cwd=repo,  # no .sops.yaml of this checkout's applies
        timeout=60,
    ).stdout
    plain.unlink()
    (repo / "apps" / "secret.sops.yaml").write_text(encrypted)
    _dump(repo / "apps" / "kustomization.yaml", {"resources": ["configmap.yaml", "secret.sops.yaml"]})
    widget = {"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "w", "namespace": "demo"}, "spec": {"size": 1}}  # fmt: skip
    _dump(repo / "extras" / "widget.yaml", widget)
    _dump(repo / "extras" / "kustomization.yaml", {"resources": ["widget.yaml"]})
    _git(repo, "init", "--quiet", "-b", BRANCH)
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", "fleet: infrastructure, apps, extras")


@pytest.fixture(scope="module")
def node(sandbox_env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """The sandbox's first host as a k3s server (node.yaml, the simulator's artifacts), its node running
    TIME_FACTOR times faster than real time, with the fixture repository in REMOTE and a deploy key
    for it; reset afterwards."""
    base = tmp_path_factory.mktemp("sim-over-ssh")
    built = node_support.build_artifacts(base / "artifacts", sandbox_env.inventory)
    path = node_support.write_inventory(
        base / "clusters.yaml",
        sandbox_env.inventory_path,
        pair=False,
        variables={"k3s_airgap_dir": str(built.folder)},
    )
    host = inv.load(path).hosts[0]
    assert host.role == "server"
    identity = pyrage.x25519.Identity.generate()
    repo = base / "repo"
    make_repository(repo, str(identity.to_public()))
    node_support.raise_kernel_limits()
    node_support.reset([host])
    shell = RemoteShell(host, connect_timeout=10)
    upper = node_support.upper_dir(sandbox_env.state_dir, host.name)
    found = Node(host, shell, upper, sandbox_env.ssh_config, Secret(str(identity) + "\n"))
    machine_kubectl = found.run(f"readlink {MACHINE_KUBECTL} || true").stdout.strip()
    try:
        # a node without kubectl of its own: k3s' installer (node.yaml) then links kubectl to k3s
        found.run(f"rm -f {MACHINE_KUBECTL}")
        # k3s.service reads /etc/default/k3s (EnvironmentFile=-/etc/default/%N, as install.sh writes it)
        found.run("umask 022 && cat > /etc/default/k3s", stdin=f"FLUXOPS_SIM_TIME_FACTOR={TIME_FACTOR}\n")
        report, text = node_support.run(path, limit=(host.name,))
        journal = found.run("journalctl -u k3s --no-pager | tail -30", check=False).stdout
        assert report.failed_hosts == [], text + journal
        found.run(f"rm -rf {REMOTE} && git init --quiet --bare -b {BRANCH} {REMOTE}")
        found.run(
            f"rm -f {DEPLOY_KEY} {DEPLOY_KEY}.pub"
            f" && ssh-keygen -q -t ed25519 -N '' -C fleet-deploy -f {DEPLOY_KEY}"
            f" && cat {DEPLOY_KEY}.pub >> /root/.ssh/authorized_keys"
        )
        push = {"GIT_SSH_COMMAND": f"ssh -F {sandbox_env.ssh_config}"}
        _git(repo, "push", "--quiet", f"{host.name}:{REMOTE}", f"{BRANCH}:{BRANCH}", env=push)
        yield found
    finally:
        node_support.reset([host])
        found.run(f"rm -rf {REMOTE} {DEPLOY_KEY} {DEPLOY_KEY}.pub", check=False)
        found.run("sed -i '/ fleet-deploy$/d' /root/.ssh/authorized_keys", check=False)
        if machine_kubectl:
            found.run(f"ln -sfn {machine_kubectl} {MACHINE_KUBECTL}", check=False)
        shell.close()


def _holding(upper: Path, needles: list[bytes]) -> dict[str, int]:
    """Files of the host's upper directory holding any of ``needles``, with their modes."""
    found = {}
    for root, _, files in os.walk(upper):
        for name in files:
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if any(n in data for n in needles):
                found[str(path.relative_to(upper))] = path.stat().st_mode & 0o777
    return found


def _summary(items: list[dict[str, Any]], revision: str, replacement: str) -> dict[str, tuple[str, ...]]:
    """Each Kustomization's Ready status, reason and message (its revision named ``replacement``)."""
    found = {}
    for obj in items:
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        message = ready["message"].replace(revision, replacement)
        found[f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"] = (
            ready["status"],
            ready["reason"],
            message,
        )
    return found


def test_the_clis_over_ssh_give_what_the_in_process_rehearsal_gives(node: Node, tmp_path: Path) -> None:
    assert node.run("readlink /usr/local/bin/kubectl").stdout.strip() == "k3s"
    assert node.run("for c in kubectl flux; do command -v $c; done").stdout.split() == [
        "/usr/local/bin/kubectl",
        "/usr/local/bin/flux",
    ]

    installed = node.run("flux install")
    assert "✔ install finished" in installed.stdout + installed.stderr
    applied = node.run(
        "kubectl apply -f -", stdin="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: scratch\n"
    )
    assert applied.stdout.strip() == "namespace/scratch created"

    # the key on stdin: in no command line while it is handed over
    key = node.key.reveal()
    with node_support.command_lines() as seen:
        created = node.run(
            "kubectl create secret generic sops-age --namespace=flux-system "
            "--from-file=age.agekey=/dev/stdin --dry-run=client -o yaml | kubectl apply -f -",
            stdin=node.key,
        )
    assert created.stdout.strip() == "secret/sops-age created"
    assert [c for c in seen if b"--from-file=age.agekey=/dev/stdin" in c], "the pipeline was seen running"
    assert not [c for c in seen if key.strip().encode() in c]

    boot = node.run(
        f"flux bootstrap git --url={node.url} --branch={BRANCH} --path=clusters/{CLUSTER} "
        f"--private-key-file={DEPLOY_KEY}"
    )
    assert "✔ Kustomization reconciled successfully" in boot.stdout + boot.stderr, boot.stdout + boot.stderr
    reconciled = node.run("flux reconcile kustomization apps --with-source")
    assert "✔ applied revision" in reconciled.stdout + reconciled.stderr, (
        reconciled.stdout + reconciled.stderr
    )
    extras = node.run("flux reconcile kustomization extras", check=False)
    assert extras.rc != 0 and 'no matches for kind "Widget" in version "example.com/v1"' in extras.stderr
    checked = node.run("flux check")
    assert "✔ all checks passed" in checked.stdout + checked.stderr, checked.stdout + checked.stderr
    refused = node.run("kubectl port-forward -n demo svc/web 8080:80", check=False)
    assert refused.rc == 2 and "unsupported by the simulator" in refused.stderr  # never a silent success
    listed = node.run("flux get kustomizations -A").stdout
    for name in ("flux-system", "infrastructure", "apps", "extras"):
        assert any(line.split()[1:2] == [name] for line in listed.splitlines()), listed
    remote = node.run(f"git --git-dir={REMOTE} rev-parse refs/heads/{BRANCH}").stdout.strip()
    source = json.loads(node.run("kubectl get gitrepository flux-system -n flux-system -o json").stdout)
    assert source["spec"]["url"] == node.url  # fetched over SSH with the deploy key bootstrap stored
    assert source["status"]["artifact"]["revision"] == f"{BRANCH}@sha1:{remote}"
    over_ssh = json.loads(node.run("kubectl get kustomizations -A -o json").stdout)["items"]
    revision = f"{BRANCH}@sha1:{remote}"
    applied_revisions = {o["metadata"]["name"]: o["status"].get("lastAppliedRevision") for o in over_ssh}
    assert applied_revisions == {"flux-system": revision, "infrastructure": revision, "apps": revision,
                                 "extras": None}  # fmt: skip
    config = json.loads(node.run("kubectl get configmap settings -n demo -o json").stdout)
    assert config["data"] == {"greeting": "hello"}
    token = json.loads(node.run("kubectl get secret token -n demo -o json").stdout)
    assert base64.b64decode(token["data"]["token"]) == b"s3cret-value"

    # the same commit, in-process: a clone of what bootstrap pushed
    clone = tmp_path / "clone"
    push = {"GIT_SSH_COMMAND": f"ssh -F {node.ssh_config}"}
    subprocess.run(["git", "clone", "--quiet", "-b", BRANCH, f"{node.host.name}:{REMOTE}", str(clone)],
                   check=True, capture_output=True, env={**os.environ, **push}, timeout=120)  # fmt: skip
    kept = tmp_path / "node"
    result = rehearse.rehearse(clone, CLUSTER, identities=node.key, keep=kept, time_factor=None)
    assert result.snapshot.head == remote and result.snapshot.changed == [], "the same tree as over SSH"
    in_process = SimCluster(kept).read().list(sim_ks.GROUP, "Kustomization")
    assert {o["metadata"]["name"]: o["status"].get("lastAppliedRevision") for o in in_process} == {
        **{n: result.snapshot.revision for n in ("flux-system", "infrastructure", "apps")},
        "extras": None,
    }
    expected = _summary(in_process, result.snapshot.revision, "REVISION")
    assert _summary(over_ssh, revision, "REVISION") == expected
    assert [p.name for p in result.phases if not p.ready] == ["extras"]

    # the key is on no file of the host but the simulator's own state (0600)
    needles = [key.strip().encode(), base64.b64encode(key.encode())]
    holding = _holding(node.upper, needles)
    assert holding and all(path.startswith(f"{SIM_STATE}/") for path in holding), holding
    assert set(holding.values()) == {0o600}, holding
