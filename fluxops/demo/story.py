"""``invoke demo``: both clusters from nothing to Flux reconciling, on the sandbox hosts, in numbered steps.

Sandbox hosts up; the Flux tree copied to a temporary workspace; a key per cluster; the secrets
created for those keys; a git remote on each cluster's server; node.up on both (the simulator's k3s
and flux, as release artifacts); both clusters bootstrapped in parallel; status; lab's key rotated
with the cluster online; status again; sandbox down and workspace removed. Only the workspace and the
sandbox's own state folder are written: never the user's keys, ``~/.kube`` or working tree.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from fluxops import inventory as inv
from fluxops import node as nodes
from fluxops import sandbox
from fluxops.bootstrap.node import over_ssh
from fluxops.bootstrap.phases import PhaseRun
from fluxops.bootstrap.run import Report, bootstrap
from fluxops.bootstrap.status import ClusterStatus, statuses
from fluxops.bootstrap.target import target_for
from fluxops.bootstrap.view import phase_line, status_table
from fluxops.demo import remotes, workspace
from fluxops.errors import FluxopsError, RotationError
from fluxops.progname import progname
from fluxops.runner import inventory_play, recap
from fluxops.runner.execute import Options
from fluxops.runner.results import Report as PlayReport
from fluxops.runner.results import Status, TaskResult
from fluxops.secrets import keys, repository
from fluxops.secrets.rotation import Journal, Rotation
from fluxops.settings import Settings
from fluxops.shell import RemoteShell
from fluxops.sim import artifacts

Say = Callable[[str], None]
ROTATED = "lab"  # the cluster whose key the demo rotates online
# The simulated clock's speed: Flux's intervals and retries pass in seconds. Not faster: a phase's
# timeout (5m: 10 s here) must outlast a busy machine's slowness, which the clock multiplies too.
TIME_FACTOR = 30
SIM_ENV = "/etc/default/k3s"  # k3s.service's optional environment file


@dataclass
class Outcome:
    """What the demo measured."""

    ok: bool = True
    reports: dict[str, Report] = field(default_factory=dict)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


class _PlayView(recap.TextReporter):
    """node.up in a few lines: each play, every failure in full, the recap."""

    def __init__(self, say: Say) -> None:
        from rich.console import Console

        super().__init__(Console(), check=False)
        self.say = say

    def play_started(self, play: object, hosts: Sequence[str]) -> None:
        """One line per play."""
        if hosts:
            self.say(f"   play: {escape(str(getattr(play, 'name', '')))} ({', '.join(hosts)})")

    def task_done(self, result: TaskResult) -> None:
        """Failures only, with their details."""
        if result.status in (Status.FAILED, Status.UNREACHABLE):
            with self._lock:
                for line in [recap.task_line(result), *recap.failure_details(result)]:
                    self.say(f"   [red]{escape(line)}[/]")


def _hosts_line(inventory: inv.Inventory) -> str:
    return ", ".join(f"{h.name} ({h.cluster}, {h.address})" for h in inventory.hosts)


def _rewrite_url(root: Path, flux_path: str, old: str, new: str) -> list[Path]:
    """Every file of the cluster's folder naming ``old`` now names ``new`` (the tree's GitRepository)."""
    changed = []
    for path in sorted((root / flux_path).rglob("*.y*ml")):
        text = path.read_text(encoding="utf-8")
        if old in text:
            path.write_text(text.replace(old, new), encoding="utf-8")
            changed.append(path)
    return changed


def _speed_up_clock(shell: RemoteShell) -> None:
    shell.run(["sh", "-c", f"umask 022 && cat > {SIM_ENV}"], stdin=f"FLUXOPS_SIM_TIME_FACTOR={TIME_FACTOR}\n")


def _node_up(space: workspace.Workspace, root: Path, say: Say, timeout: float) -> PlayReport:
    view = _PlayView(say)
    report = inventory_play.play(
        root / nodes.PLAYBOOK,
        space.inventory,
        options=Options(timeout=timeout),
        reporter=view,
        root=root,
    )
    for line in recap.recap_lines(report)[1:]:
        say(f"   {escape(line)}")
    return report


def _bootstrap_all(space: workspace.Workspace, say: Say, timeout: float) -> dict[str, Report]:
    inventory = inv.load(space.inventory, root=space.root)
    lock = threading.Lock()

    def one(cluster: str) -> Report:
        target = target_for(space.root, inventory, cluster)

        def observe(run: PhaseRun) -> None:
            if run.state != "pending":
                with lock:
                    say(f"   {escape(phase_line(cluster, run))}")

        def step(line: str) -> None:
            with lock:
                say(f"   {cluster}: {escape(line)}")

        with over_ssh(target.host, timeout=timeout) as node:
            return bootstrap(target, node, space.key_dir, say=step, observe=observe)

    names = list(inventory.clusters)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def _status_all(space: workspace.Workspace, say: Say) -> list[ClusterStatus]:
    from fluxops.tables import console

    inventory = inv.load(space.inventory, root=space.root)
    found = statuses({c: nodes.server_of(inventory, c) for c in inventory.clusters}, over_ssh)
    for status in found:
        console.print(status_table(status))
    return found


def _rotate(space: workspace.Workspace, cluster: str, url: str, say: Say) -> str:
    """keys.rotate with the cluster online; at the step that needs the re-encrypted files on the
    remote, they are committed and pushed as the operator would, and the rotation resumed."""
    rotation = Rotation(space.root, space.key_dir, cluster, inventory=space.inventory)
    rotation.report = lambda line: say(f"   {escape(line)}")
    try:
        return str(rotation.run().new_public)
    except RotationError as exc:
        journal = Journal.load(rotation.journal_file)
        if journal is None or not journal.is_done(5) or journal.is_done(6):
            raise  # stopped anywhere but before the new key goes in alone
        say(f"   [yellow]{escape(str(exc).splitlines()[0][:160])}[/]")
    sha = workspace.commit(space.root, f"{cluster}: secrets re-encrypted to the new key")
    remotes.push(space.root, url)
    say(f"   committed and pushed {sha[:12]}; resuming the rotation")
    return str(rotation.run(resume=True).new_public)


def _summary(outcome: Outcome, say: Say) -> None:
    from rich.table import Table

    from fluxops.tables import console

    table = Table(title="bootstrap", title_justify="left")
    for column in ("cluster", "result", "phases ready", "total", "waiting for phases", "outside the waits"):
        table.add_column(column)
    for cluster, report in outcome.reports.items():
        runs = report.outcome.phases if report.outcome else []
        ready = sum(1 for r in runs if r.state == "ready")
        table.add_row(
            cluster,
            "[green]ok[/]" if report.ok else "[red]FAILED[/]",
            f"{ready}/{len(runs)}",
            f"{report.seconds:.1f}s",
            f"{report.waiting:.1f}s",
            f"{report.seconds - report.waiting:.1f}s",
        )
    console.print(table)
    say(f"demo took {outcome.seconds:.0f}s")


def next_steps() -> list[str]:
    """The commands a newcomer tries after the demo."""
    name = progname()
    return [
        f"{name} demo --keep                  leave the hosts and the workspace running, then look around",
        f"{name} layout.tree --cluster lab    the phases Flux reconciles, level by level",
        f"{name} layout.validate              the whole tree checked offline, as Flux builds it",
        f"{name} rehearse --cluster phx       a reconcile on a simulated node, from your working tree",
        f"{name} bootstrap --cluster lab --check   what bootstrap would do on your real node",
    ]


def _not_ready(found: list[ClusterStatus]) -> list[str]:
    return [f"{s.cluster}: {s.error or 'not every phase is Ready'}" for s in found if not s.ok]


def _keys_and_secrets(space: workspace.Workspace, clusters: Sequence[str], say: Say) -> None:
    say("[bold]2. a key per cluster[/] (keys.generate: the workspace's key store, 0600)")
    for cluster in clusters:
        key = keys.generate(space.root, space.key_dir, cluster).key
        say(f"   {cluster}: {key.public}  ({key.path})")
    say("[bold]3. secrets created for those keys[/] (secrets.scaffold: encrypted before written)")
    for cluster in clusters:
        done = repository.scaffold(space.root, space.key_dir, cluster)
        say(f"   {cluster}: {sum(1 for s in done if s.state == 'written')} encrypted secret file(s)")


def _remotes(
    space: workspace.Workspace, inventory: inv.Inventory, settings: Settings, say: Say
) -> dict[str, str]:
    """A git remote on each cluster's server, the tree pointed at it and pushed, the workspace's
    inventory and artifact folder; each cluster's URL."""
    say("[bold]4. a git remote on each cluster's server[/] (Flux reads it with a read-only deploy key)")
    servers = {c: nodes.server_of(inventory, c) for c in inventory.clusters}
    deploy_public = remotes.make_deploy_key(space.deploy_key)
    remotes.use_sandbox_ssh(space.root, list(servers.values()))
    urls = {c: remotes.url_of(h) for c, h in servers.items()}
    for cluster, host in servers.items():
        old = str(host.vars["flux_git_url"])
        _rewrite_url(space.root, str(host.vars.get("flux_path", "")), old, urls[cluster])
    sha = workspace.commit(space.root, "the Flux tree with the demo's keys and remotes")
    first = inventory.hosts[0].vars
    built = artifacts.build(
        space.artifacts,
        k3s_version=str(first["k3s_version"]),
        flux_version=str(nodes.play_vars(first, settings.root)["flux_cli_version"]),
        images=True,
    )
    workspace.write_inventory(
        space.inventory,
        inventory,
        variables={
            "k3s_airgap_dir": str(built.folder),
            "kubeconfig_dir": str(space.kube_dir),
            "flux_deploy_key_file": str(space.deploy_key),
        },
        cluster_vars={
            c: {"flux_git_url": urls[c], "flux_known_hosts_file": str(h.known_hosts)}
            for c, h in servers.items()
        },
    )
    for cluster, host in servers.items():
        shell = RemoteShell(host, connect_timeout=settings.connect_timeout)
        try:
            remotes.serve(shell, deploy_public)
            _speed_up_clock(shell)
        finally:
            shell.close()
        remotes.push(space.root, urls[cluster])
        say(f"   {cluster}: {urls[cluster]} at {sha[:12]}")
    return urls


def _story(
    space: workspace.Workspace, inventory: inv.Inventory, settings: Settings, outcome: Outcome, say: Say
) -> None:
    """Steps 2 to 9 on running sandbox hosts; failures go into ``outcome``."""
    _keys_and_secrets(space, list(inventory.clusters), say)
    urls = _remotes(space, inventory, settings, say)
    say(
        "[bold]5. node.up on every host[/] (playbooks/node.yaml; k3s and flux from an artifact folder "
        f"holding the simulator's, whose clock runs {TIME_FACTOR}x)"
    )
    played = _node_up(space, settings.root, say, settings.command_timeout)
    if played.failed_hosts:
        raise FluxopsError(f"node.up failed on {', '.join(played.failed_hosts)} (see above)")
    say("[bold]6. bootstrap, every cluster in parallel[/] (key on stdin, Flux, phases level by level)")
    outcome.reports = _bootstrap_all(space, say, settings.command_timeout)
    for cluster, report in outcome.reports.items():
        if not report.ok and report.outcome is not None:
            outcome.failures.append(f"{cluster}: bootstrap stopped at {report.outcome.stopped_at}")
    say("[bold]7. status[/]")
    outcome.failures += _not_ready(_status_all(space, say))
    say(f"[bold]8. {ROTATED}'s key rotated with the cluster online[/] (keys.rotate)")
    new = _rotate(space, ROTATED, urls[ROTATED], say)
    say(f"   {ROTATED}'s key is now {new}; the old one is archived in the workspace's key store")
    say("[bold]9. status again[/]")
    outcome.failures += _not_ready(_status_all(space, say))


def run(settings: Settings, *, keep: bool = False, say: Say = print, base: Path | None = None) -> Outcome:
    """The whole demo; the sandbox is taken down and the workspace removed unless ``keep``."""
    began = time.monotonic()
    outcome = Outcome()
    artifacts.check_visible()
    inventory = inv.load(settings.sandbox_inventory, clusters=settings.clusters, root=settings.root)
    space = workspace.make(base or Path(tempfile.mkdtemp(prefix="fluxops-demo-")), settings.root)
    say(
        f"[bold]fluxops demo[/]: clusters {', '.join(inventory.clusters)} from nothing to Flux "
        f"reconciling, on sandbox hosts (nothing else is contacted)\nworkspace {space.base} (the Flux "
        "tree, keys, kubeconfigs; your own are not touched)"
    )
    try:
        say(f"[bold]1. sandbox hosts up[/]: {_hosts_line(inventory)}")
        sandbox.up(
            inventory,
            settings.sandbox_dir,
            subnet=settings.sandbox_subnet,
            real_inventory=settings.inventory,
            progress=lambda m: say(f"   {escape(m)}"),
        )
        _story(space, inventory, settings, outcome, say)
    except FluxopsError as exc:
        outcome.failures.append(str(exc))
        say(f"[red]error: {escape(str(exc))}[/]")
    finally:
        if keep:
            say(
                f"sandbox and workspace left running: {space.base}\n"
                f"   {progname()} status --all --inventory {space.inventory}\n"
                f"   ssh -F {sandbox.ssh_config_path(settings.sandbox_dir)} {inventory.hosts[0].name} "
                "flux --kubeconfig /etc/rancher/k3s/k3s.yaml get kustomizations\n"
                f"   stop it with: {progname()} sandbox.down (then remove {space.base})"
            )
        else:
            say("[bold]10. sandbox hosts down, workspace removed[/]")
            result = sandbox.down(settings.sandbox_dir, progress=lambda m: say(f"   {escape(m)}"))
            for line in result.kept:
                say(f"   [yellow]{escape(line)}[/]")
            shutil.rmtree(space.base, ignore_errors=True)
    outcome.ok = not outcome.failures
    outcome.seconds = time.monotonic() - began
    if outcome.reports:
        _summary(outcome, say)
    return outcome
