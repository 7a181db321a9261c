"""bootstrap over SSH on a sandbox host that node.up brought up with the simulator's k3s and flux: a copy
of this repository's tree (test keys) in a bare repository on the host, which the node's
source-controller reads over SSH with a deploy key the inventory names. The age key travels on stdin
only (no command line on this machine, the host's processes included), lands in no file of the host's
overlay but the simulated node's 0600 state, and a second bootstrap changes nothing."""

from __future__ import annotations

import base64
import dataclasses
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops.bootstrap.node import for_host
from fluxops.bootstrap.run import bootstrap
from fluxops.bootstrap.target import target_for
from fluxops.errors import HostKeyError
from fluxops.shell import Connections, RemoteShell
from tests import node_support
from tests.unit.bootstrap_testing import TREE_URL, make_template
from tests.unit.sim_testing import git

pytestmark = [pytest.mark.ssh, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

REMOTE = "/srv/git/fluxops.git"
SIM_STATE = "var/lib/rancher/k3s/server/sim"
TIME_FACTOR = 120
MACHINE_KUBECTL = "/usr/bin/kubectl"


@dataclass
class Lab:
    """lab's server brought up, the repository on it, the inventory bootstrap reads."""

    host: inv.Host
    root: Path
    key_dir: Path
    inventory: Path
    upper: Path


def _sh(shell: RemoteShell, script: str, stdin: str | None = None, check: bool = True) -> str:
    return shell.run(["sh", "-c", script], stdin=stdin, timeout=180, check=check).stdout


@pytest.fixture(scope="module")
def lab(sandbox_env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("bootstrap-ssh")
    built = node_support.build_artifacts(base / "artifacts", sandbox_env.inventory)
    first = sandbox_env.inventory.hosts[0]
    url = f"ssh://root@{first.address}:{first.port}{REMOTE}"
    deploy = base / "deploy"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fluxops-deploy", "-f", str(deploy)],
                   check=True, timeout=60)  # fmt: skip
    path = node_support.write_inventory(
        base / "inventory.yaml",
        sandbox_env.inventory_path,
        pair=False,
        variables={"k3s_airgap_dir": str(built.folder), "flux_git_url": url,
                   "flux_deploy_key_file": str(deploy), "flux_known_hosts_file": str(first.known_hosts)},
    )  # fmt: skip
    host = inv.load(path, root=Path.cwd()).cluster("lab").hosts[0]
    template, key_dir = make_template(base / "template")
    sync = template / "k8s/clusters/lab/flux-system/gotk-sync.yaml"
    sync.write_text(sync.read_text().replace(TREE_URL, url))
    git(template, "commit", "-q", "-am", "lab reads the sandbox host's repository")
    node_support.raise_kernel_limits()
    node_support.reset([host])
    shell = RemoteShell(host, connect_timeout=10)
    machine_kubectl = _sh(shell, f"readlink {MACHINE_KUBECTL} || true").strip()
    try:
        _sh(shell, f"rm -f {MACHINE_KUBECTL}")
        _sh(shell, "umask 022 && cat > /etc/default/k3s", stdin=f"FLUXOPS_SIM_TIME_FACTOR={TIME_FACTOR}\n")
        report, text = node_support.run(path, limit=(host.name,))
        assert report.failed_hosts == [], text
        _sh(shell, f"rm -rf {REMOTE} && git init --quiet --bare -b main {REMOTE}")
        _sh(shell, "cat >> /root/.ssh/authorized_keys", stdin=(deploy.with_suffix(".pub")).read_text())
        ssh = (f"ssh -i {host.key_file} -o IdentitiesOnly=yes -o UserKnownHostsFile={host.known_hosts} "
               "-o StrictHostKeyChecking=yes -o BatchMode=yes")  # fmt: skip
        os.environ["GIT_SSH_COMMAND"] = ssh  # bootstrap's git ls-remote of the URL, and this push
        subprocess.run(["git", "-C", str(template), "push", "--quiet", url, "main"], check=True, timeout=120,
                       env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null"})  # fmt: skip
        yield Lab(host, template, key_dir, path, node_support.upper_dir(sandbox_env.state_dir, host.name))
    finally:
        os.environ.pop("GIT_SSH_COMMAND", None)
        node_support.reset([host])
        _sh(shell, f"rm -rf {REMOTE}", check=False)
        _sh(shell, "sed -i '/ fluxops-deploy$/d' /root/.ssh/authorized_keys", check=False)
        if machine_kubectl:
            _sh(shell, f"ln -sfn {machine_kubectl} {MACHINE_KUBECTL}", check=False)
        shell.close()


def test_bootstrap_over_ssh_leaves_every_phase_ready_and_the_key_nowhere(lab: Lab) -> None:
    target = target_for(lab.root, inv.load(lab.inventory, root=Path.cwd()), "lab")
    key = (lab.key_dir / "lab.agekey").read_text()
    with Connections(connect_timeout=10) as conns, node_support.command_lines() as seen:
        report = bootstrap(target, for_host(conns, lab.host), lab.key_dir)
    assert report.ok, (report.outcome, report.steps)
    assert report.status is not None and report.status.ok
    assert dict(report.steps)["key"] == "secret flux-system/sops-age created"
    assert "secret/flux-system created" in [r for s, r in report.steps if s == "sync"]
    runs = {r.name: r for r in report.outcome.phases}
    assert runs["crds"].level < runs["infrastructure"].level == runs["storage"].level
    assert [c for c in seen if b"reconcile" in c and b"kustomization" in c], "the host's commands were seen"
    assert not [c for c in seen if key.strip().encode() in c]
    needles = [key.strip().encode(), base64.b64encode(key.encode())]
    holding = {}
    for folder, _, files in os.walk(lab.upper):
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink() and any(n in path.read_bytes() for n in needles):
                holding[str(path.relative_to(lab.upper))] = path.stat().st_mode & 0o777
    assert all(p.startswith(f"{SIM_STATE}/") for p in holding), holding  # the datastore alone
    assert set(holding.values()) <= {0o600}, holding
    with Connections(connect_timeout=10) as conns:
        again = bootstrap(target, for_host(conns, lab.host), lab.key_dir)
    assert again.ok and dict(again.steps)["key"] == "secret flux-system/sops-age unchanged"
    assert {r for s, r in again.steps if s == "sync"} == {
        "secret/flux-system unchanged",
        "gitrepository.source.toolkit.fluxcd.io/flux-system unchanged",
        "kustomization.kustomize.toolkit.fluxcd.io/flux-system unchanged",
    }


def test_a_changed_host_key_is_refused_before_anything_happens(lab: Lab, tmp_path: Path) -> None:
    forged = tmp_path / "known_hosts"
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=60)
    kind, body = other.with_suffix(".pub").read_text().split()[:2]
    forged.write_text(f"{lab.host.address} {kind} {body}\n")
    host = dataclasses.replace(lab.host, known_hosts=forged)
    target = target_for(lab.root, inv.load(lab.inventory, root=Path.cwd()), "lab")
    target.host = host
    with Connections(connect_timeout=10) as conns, pytest.raises(HostKeyError):
        bootstrap(target, for_host(conns, host), lab.key_dir, check=True)
