"""bootstrap over SSH on sandbox hosts that node.up brought up with the simulator's k3s and flux: lab's
server n5 and phx's server phx1, each holding a copy of this repository's tree (test keys) in a bare
repository of its own, which the node's source-controller reads over SSH with the cluster's deploy key
the inventory names. The hosts see the machine's own ``/usr/bin/kubectl`` (their root is an overlay of
the machine's ``/``): bootstrap runs ``k3s kubectl``, so that one never matters. The age key travels on
stdin only (no command line on this machine, the host's processes included), lands in no file of the
host's overlay but the simulated node's 0600 state, in no shell history, no journal entry and no file
under /var/log; a second bootstrap changes nothing."""

from __future__ import annotations

import base64
import bz2
import dataclasses
import gzip
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops.bootstrap.node import BootstrapError, for_host
from fluxops.bootstrap.preflight_remote import pinned_flux_version, preflight_remote
from fluxops.bootstrap.run import bootstrap
from fluxops.bootstrap.target import Target, target_for
from fluxops.errors import HostKeyError
from fluxops.layout.validate import validate
from fluxops.shell import Connections, RemoteShell
from tests import node_support
from tests.unit.bootstrap_testing import TREE_URL, make_template
from tests.unit.sim_testing import git

pytestmark = [pytest.mark.ssh, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CLUSTERS = ("lab", "phx")
REMOTE = "/srv/git/fluxops.git"
SIM_STATE = "var/lib/rancher/k3s/server/sim"
TIME_FACTOR = 30  # a 5m timeout is 10 s: enough for a busy machine, whose slowness the clock multiplies too
JOURNAL = "var/log/journal"
MACHINE_KUBECTL = "/usr/bin/kubectl"  # a cloud SDK's, say: k3s' installer then links no kubectl
# Every shell history (and the like) in every home of /etc/passwd: bash, zsh, fish, sh, python, less...
HISTORIES = r"""
cut -d: -f6 /etc/passwd | sort -u | while read -r home; do
  case "$home" in /|/nonexistent|"") continue ;; esac
  [ -d "$home" ] && find "$home" -xdev -maxdepth 4 -type f \( -name '.*history' -o -name '*_history' \
    -o -name '.lesshst' -o -name '.viminfo' \) 2>/dev/null
done
true
"""


@dataclass
class Server:
    """A cluster's server brought up, the repository on it, the inventory bootstrap reads."""

    cluster: str
    host: inv.Host
    root: Path
    key_dir: Path
    inventory: Path
    upper: Path

    def target(self) -> Target:
        """The cluster's bootstrap target, from the inventory as it is on disk."""
        return target_for(self.root, inv.load(self.inventory, root=Path.cwd()), self.cluster)


def _sh(shell: RemoteShell, script: str, stdin: str | None = None, check: bool = True) -> str:
    return shell.run(["sh", "-c", script], stdin=stdin, timeout=180, check=check).stdout


def _deploy_comment(cluster: str) -> str:
    return f"fluxops-deploy-{cluster}"


@pytest.fixture(scope="module")
def servers(sandbox_env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """lab's and phx's servers brought up by one node.up run, each with its own bare repository and
    deploy key, and the tree pushed to both."""
    base = tmp_path_factory.mktemp("bootstrap-ssh")
    built = node_support.build_artifacts(base / "artifacts", sandbox_env.inventory)
    sandbox_hosts = {c: sandbox_env.inventory.cluster(c).hosts[0] for c in CLUSTERS}
    urls = {c: f"ssh://root@{h.address}:{h.port}{REMOTE}" for c, h in sandbox_hosts.items()}
    deploy = {c: base / f"deploy-{c}" for c in CLUSTERS}
    for cluster, key in deploy.items():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", _deploy_comment(cluster),
                        "-f", str(key)], check=True, timeout=60)  # fmt: skip
    path = node_support.write_inventory(
        base / "inventory.yaml",
        sandbox_env.inventory_path,
        pair=False,
        variables={"k3s_airgap_dir": str(built.folder), "kubeconfig_dir": str(base / "kube"),
                   "flux_known_hosts_file": str(sandbox_hosts["lab"].known_hosts)},
        host_vars={h.name: {"flux_git_url": urls[c], "flux_deploy_key_file": str(deploy[c])}
                   for c, h in sandbox_hosts.items()},
    )  # fmt: skip
    loaded = inv.load(path, root=Path.cwd())
    hosts = {c: loaded.cluster(c).hosts[0] for c in CLUSTERS}
    template, key_dir = make_template(base / "template")
    # node.yaml as in the checkout bootstrap runs from: the flux CLI version it pins
    shutil.copytree(node_support.REPO / "playbooks", template / "playbooks", dirs_exist_ok=True)
    for cluster in CLUSTERS:
        sync = template / f"k8s/clusters/{cluster}/flux-system/gotk-sync.yaml"
        sync.write_text(sync.read_text().replace(TREE_URL, urls[cluster]))
    git(template, "add", "-A")
    git(template, "commit", "-q", "-m", "each cluster reads its sandbox host's repository")
    node_support.raise_kernel_limits()
    node_support.reset(hosts.values())
    shells = {c: RemoteShell(h, connect_timeout=10) for c, h in hosts.items()}
    try:
        for shell in shells.values():
            _sh(
                shell, "umask 022 && cat > /etc/default/k3s", stdin=f"FLUXOPS_SIM_TIME_FACTOR={TIME_FACTOR}\n"
            )
        report, text = node_support.run(path, limit=tuple(h.name for h in hosts.values()))
        assert report.failed_hosts == [], text
        first = hosts["lab"]
        ssh = (f"ssh -i {first.key_file} -o IdentitiesOnly=yes -o UserKnownHostsFile={first.known_hosts} "
               "-o StrictHostKeyChecking=yes -o BatchMode=yes")  # fmt: skip
        os.environ["GIT_SSH_COMMAND"] = ssh  # bootstrap's git ls-remote of the URLs, and these pushes
        for cluster, shell in shells.items():
            _sh(shell, f"rm -rf {REMOTE} && git init --quiet --bare -b main {REMOTE}")
            _sh(
                shell,
                "cat >> /root/.ssh/authorized_keys",
                stdin=deploy[cluster].with_suffix(".pub").read_text(),
            )
            subprocess.run(["git", "-C", str(template), "push", "--quiet", urls[cluster], "main"], check=True,
                           timeout=120, env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null"})  # fmt: skip
        yield {
            c: Server(c, h, template, key_dir, path, node_support.upper_dir(sandbox_env.state_dir, h.name))
            for c, h in hosts.items()
        }
    finally:
        os.environ.pop("GIT_SSH_COMMAND", None)
        node_support.reset(hosts.values())
        for cluster, shell in shells.items():
            _sh(shell, f"rm -rf {REMOTE}", check=False)
            _sh(shell, f"sed -i '/ {_deploy_comment(cluster)}$/d' /root/.ssh/authorized_keys", check=False)
            shell.close()


@pytest.fixture(scope="module")
def lab(servers: dict[str, Server]) -> Server:
    return servers["lab"]


@pytest.fixture(scope="module")
def phx(servers: dict[str, Server]) -> Server:
    return servers["phx"]


def key_needles(key: str) -> list[bytes]:
    """The private key as it could leak: its AGE-SECRET-KEY line, the file and the line in base64."""
    line = next(x for x in key.splitlines() if x.startswith("AGE-SECRET-KEY-"))
    return [line.encode(), base64.b64encode(key.encode()), base64.b64encode(line.encode())]


def _fetch(shell: RemoteShell, script: str) -> bytes:
    """The bytes ``script`` prints on the host (gzip and base64 on the way: journal files are binary)."""
    return gzip.decompress(base64.b64decode(_sh(shell, f"{{ {script}\n}} | gzip -c | base64 -w0")))


def _contents(name: str, data: bytes) -> bytes:
    """A file's bytes, decompressed when it is a rotated log."""
    for suffix, opener in ((".gz", gzip.decompress), (".xz", lzma.decompress), (".bz2", bz2.decompress)):
        if name.endswith(suffix):
            return data + opener(data)
    return data


def host_records(shell: RemoteShell) -> dict[str, bytes]:
    """Every shell history and every file under /var/log on the host (by path), and the whole journal:
    each entry's message (``journalctl -o cat``) and every field of it (``-o export``)."""
    histories = [p for p in _sh(shell, HISTORIES).splitlines() if p]
    files = [*histories, *(p for p in _sh(shell, "find /var/log -xdev -type f").splitlines() if p)]
    archive = _fetch(
        shell, "printf '%s\\n' " + " ".join(f"'{p}'" for p in files) + " | tar -cf - -T - 2>/dev/null"
    )
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                found["/" + member.name] = _contents(member.name, handle.read())
    assert set(found) == set(files), set(files) ^ set(found)
    found["journalctl -o cat"] = _fetch(shell, "journalctl --no-pager -o cat")
    found["journalctl -o export"] = _fetch(shell, "journalctl --no-pager -o export")
    return found


def tree_levels(server: Server) -> tuple[dict[str, int], set[str]]:
    """Each Flux Kustomization of the cluster's tree at its level in the dependsOn graph (1: it depends
    on nothing but the entry); and the phases the entry applies (those of the cluster folder's own
    files)."""
    tree, _ = validate(server.root, server.cluster, key_dir=server.key_dir)
    phases = tree.clusters[server.cluster].phases
    depends = {p.name: p.depends_on for p in phases}
    levels: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in levels:
            levels[name] = 1 + max((level(d) for d in depends[name] if d in depends), default=0)
        return levels[name]

    folder = f"k8s/clusters/{server.cluster}"
    applied = {p.name for p in phases if Path(p.file).parent.as_posix() == folder}
    return {n: level(n) for n in depends}, applied


def test_bootstrap_over_ssh_leaves_every_phase_ready_and_the_key_nowhere(lab: Server) -> None:
    target = lab.target()
    key = (lab.key_dir / "lab.agekey").read_text()
    needles = key_needles(key)
    with Connections(connect_timeout=10) as conns, node_support.command_lines() as seen:
        report = bootstrap(target, for_host(conns, lab.host), lab.key_dir)
    assert report.ok, (report.outcome, report.steps)
    assert report.status is not None and report.status.ok
    assert dict(report.steps)["key"] == "secret flux-system/sops-age created"
    assert "secret/flux-system created" in [r for s, r in report.steps if s == "sync"]
    runs = {r.name: r for r in report.outcome.phases}
    assert runs["crds"].level < runs["infrastructure"].level == runs["storage"].level
    assert [c for c in seen if b"reconcile" in c and b"kustomization" in c], "the host's commands were seen"
    assert not [c for c in seen if any(n in c for n in needles)]
    with Connections(connect_timeout=10) as conns:
        again = bootstrap(target, for_host(conns, lab.host), lab.key_dir)
    assert again.ok and dict(again.steps)["key"] == "secret flux-system/sops-age unchanged"
    assert {r for s, r in again.steps if s == "sync"} == {
        "secret/flux-system unchanged",
        "gitrepository.source.toolkit.fluxcd.io/flux-system unchanged",
        "kustomization.kustomize.toolkit.fluxcd.io/flux-system unchanged",
    }
    shell = RemoteShell(lab.host, connect_timeout=10)
    try:
        if Path(MACHINE_KUBECTL).exists():  # the host sees the machine's kubectl first, not k3s'
            found = _sh(shell, 'readlink -f "$(command -v kubectl)"').strip()
            assert found == os.path.realpath(MACHINE_KUBECTL), found
        # the journal on disk as journald holds it (what /run still has, and what it has not written)
        _sh(shell, "journalctl --flush && journalctl --sync")
        journals = {p.lstrip("/") for p in _sh(shell, f"find /{JOURNAL} -type f").splitlines() if p}
        canary = f"fluxops-canary-{uuid.uuid4().hex}"  # what the host logs now is read back below
        _sh(shell, f"logger -t fluxops-test {canary}")
        records = host_records(shell)
    finally:
        shell.close()
    holding: dict[str, int] = {}
    scanned: set[str] = set()
    for folder, _, files in os.walk(lab.upper):  # every file the host wrote, the journal's included
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                scanned.add(str(path.relative_to(lab.upper)))
                if any(n in path.read_bytes() for n in needles):
                    holding[str(path.relative_to(lab.upper))] = path.stat().st_mode & 0o777
    assert all(p.startswith(f"{SIM_STATE}/") for p in holding), holding  # the datastore alone
    assert set(holding.values()) <= {0o600}, holding
    if Path("/", JOURNAL).is_dir():  # the host's journald then keeps its journal on disk (Storage=auto)
        assert {p for p in journals if p.endswith(".journal")}, journals
    assert journals <= scanned, journals - scanned
    # journal files compress long entries: the journal is read through journalctl as well
    assert b"Accepted publickey for root" in records["journalctl -o cat"], "sshd's logins are in the journal"
    assert b"_COMM=sshd" in records["journalctl -o export"]
    assert (
        canary.encode() in records["journalctl -o cat"] and canary.encode() in records["journalctl -o export"]
    )
    assert {f"/{p}" for p in journals} <= set(records), "the journal files are among /var/log's"
    leaked = sorted(where for where, data in records.items() if any(n in data for n in needles))
    assert leaked == [], leaked


def test_phx_bootstraps_over_ssh_with_every_phase_ready_level_by_level(phx: Server) -> None:
    target = phx.target()
    wanted = pinned_flux_version(target)
    assert wanted is not None
    with Connections(connect_timeout=10) as conns:
        report = bootstrap(target, for_host(conns, phx.host), phx.key_dir)
    assert report.ok, (report.outcome, report.steps)
    assert report.status is not None and report.status.ok and report.status.host == "phx1"
    steps = dict(report.steps)
    assert steps["remote preflight"].startswith("phx1: ") and steps["remote preflight"].endswith(
        f"flux {wanted.removeprefix('v')}"
    )
    assert steps["key"] == "secret flux-system/sops-age created"
    assert steps["flux"] == "installed"
    assert "secret/flux-system created" in [r for s, r in report.steps if s == "sync"]
    revision = f"main@sha1:{git(phx.root, 'rev-parse', 'main')}"
    assert {r.revision for r in report.status.kustomizations} == {revision}  # phx1's own repository
    assert report.outcome is not None
    runs = {r.name: r for r in report.outcome.phases}
    assert {r.state for r in runs.values()} == {"ready"}, {r.name: r.state for r in runs.values()}
    graph, phases = tree_levels(phx)
    assert set(runs) == {target.entry, *graph}
    assert runs[target.entry].level == 0
    # the phases the entry applies are on the node from the start: each at its level of the graph
    assert {"crds", "infrastructure", "storage", "infrastructure-config", "apps"} <= phases
    assert {n: runs[n].level for n in phases} == {n: graph[n] for n in phases}
    assert graph["crds"] < graph["infrastructure"] == graph["storage"] < graph["infrastructure-config"]
    # what a phase applies joins a round once it is there: never before its level, never before its needs
    for name, level in graph.items():
        assert runs[name].level >= level, (name, runs[name].level, level)
        assert all(runs[d].level < runs[name].level for d in runs[name].depends_on), name


def test_a_flux_cli_other_than_the_pinned_one_is_refused_over_ssh(lab: Server) -> None:
    wanted = pinned_flux_version(lab.target())
    assert wanted == node_support.versions(inv.load(lab.inventory, root=Path.cwd()))[1]
    with Connections(connect_timeout=10) as conns:
        node = for_host(conns, lab.host)
        assert preflight_remote(node, "lab", wanted).flux_version == wanted.removeprefix("v")
        with pytest.raises(BootstrapError) as refused:
            preflight_remote(node, "lab", "v2.6.0")
    message = str(refused.value)
    assert message.startswith(f"{lab.host.name}: the flux CLI is version {wanted.removeprefix('v')}, ")
    assert "but v2.6.0 is pinned" in message and "node.up --cluster lab` installs the pinned" in message


def test_a_changed_host_key_is_refused_before_anything_happens(lab: Server, tmp_path: Path) -> None:
    forged = tmp_path / "known_hosts"
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=60)
    kind, body = other.with_suffix(".pub").read_text().split()[:2]
    forged.write_text(f"{lab.host.address} {kind} {body}\n")
    host = dataclasses.replace(lab.host, known_hosts=forged)
    target = lab.target()
    target.host = host
    with Connections(connect_timeout=10) as conns, pytest.raises(HostKeyError):
        bootstrap(target, for_host(conns, host), lab.key_dir, check=True)
