"""``k3s``: k3s at a pinned version, running as a server or an agent, laid out as k3s' install script
lays it out (``INSTALL_K3S_SKIP_DOWNLOAD=true`` for an air-gapped node).

- the binary at ``/usr/local/bin/k3s`` (0755): copied from the artifact folder (``airgap_dir``: the
  release's ``k3s``/``k3s-arm64``/... and its ``sha256sum-<arch>.txt``) or downloaded on the host from
  the release URL; its sha256 checked either way (pinned, or the release's checksum file). Never
  ``curl | sh``. The folder's ``k3s-airgap-images-<arch>.tar[.zst|.gz]``, when there, goes to
  ``/var/lib/rancher/k3s/agent/images/``.
- ``kubectl``, ``crictl`` and ``ctr`` linked to it where no such command exists;
- the unit ``k3s.service`` (server) or ``k3s-agent.service`` (agent) as install.sh writes it, and its
  environment file ``<unit>.env`` (0600) holding ``K3S_TOKEN``: the join token comes in a secret
  argument and reaches the host on stdin, never on a command line; only its file's sha256 is read back;
- the unit enabled and started; restarted when the binary, unit, environment or images changed, or when
  ``restart`` says so (its ``config.yaml`` changed).

Everything else k3s reads (node name, tls-san, disabled components, the server URL of an agent) belongs
in ``/etc/rancher/k3s/config.yaml``, written by its own task (a template, with a diff).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

from fluxops.masking import Secret
from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param, Step
from fluxops.runner.modules import _release as release
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import FileState, content_change, file_fact, put_step
from fluxops.runner.modules.get_url import downloaders_fact
from fluxops.runner.modules.service import ENABLED, RUNNING, WITHOUT_SYSTEMD, UnitState, unit_fact
from fluxops.shell import quote

BIN_DIR = "/usr/local/bin"
BINARY = f"{BIN_DIR}/k3s"
SYSTEMD_DIR = "/etc/systemd/system"
IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
LINKS = ("kubectl", "crictl", "ctr")
RELEASES = "https://github.com/k3s-io/k3s/releases/download"
UNITS = {"server": "k3s", "agent": "k3s-agent"}
_VERSION = re.compile(r"v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+")
_TOKEN = re.compile(r"[A-Za-z0-9:._/+=@-]+")
_IMAGES = re.compile(r"k3s-airgap-images-(?P<arch>[a-z0-9]+)\.tar(\.zst|\.gz)?")

# the unit k3s' install.sh writes (create_systemd_service_file), for ``k3s server`` or ``k3s agent``
UNIT_TEMPLATE = """\
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-{env_file}
KillMode=process
Delegate=yes
User=root
# Having non-zero Limit*s causes performance problems due to accounting overhead
# in the kernel. We recommend using cgroups to do container-local accounting.
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart={binary} \\
    {role}

"""


def unit_name(role: str) -> str:
    """The systemd unit of a role: k3s (server) or k3s-agent (agent)."""
    return UNITS[role]


def unit_path(role: str) -> str:
    """Where the role's unit file lives."""
    return f"{SYSTEMD_DIR}/{unit_name(role)}.service"


def env_path(role: str) -> str:
    """Where the role's environment file (K3S_TOKEN) lives."""
    return unit_path(role) + ".env"


def unit_file(role: str) -> str:
    """The unit file of ``role``, as install.sh writes it."""
    return UNIT_TEMPLATE.format(env_file=env_path(role), binary=BINARY, role=role)


def links_fact() -> Fact:
    """Which of kubectl, crictl and ctr exist in the bin folder (``here``) or elsewhere on PATH."""
    lines = []
    for name in LINKS:
        path = quote([f"{BIN_DIR}/{name}"])
        lines.append(
            f'if [ -e {path} ] || [ -L {path} ]; then echo "{name}=here"; '
            f'elif command -v {name} >/dev/null 2>&1; then echo "{name}=elsewhere"; fi'
        )
    return Fact("links", "\n".join(lines), lambda out, rc: dict(ln.split("=", 1) for ln in out.split()))


@register
class K3s(Module):
    """k3s installed or upgraded to ``version`` and running as ``role``; see the module's docstring."""

    name = "k3s"
    help = "k3s at a pinned version (air-gap folder or checked download), its unit, running as server/agent"
    params = (
        Param("role", (str,), required=True, choices=("server", "agent")),
        Param("version", (str,), required=True, help="the k3s release, e.g. v1.33.5+k3s1"),
        Param("airgap_dir", (str,), help="artifact folder on the controller (empty: download)"),
        Param("sha256", (str,), help="pinned sha256 of the binary (empty: the release's checksum file)"),
        Param("release_url", (str,), default=RELEASES, help="where releases are downloaded from"),
        Param("token", (str,), secret=True, help="the join token (agents; on stdin, never in argv)"),
        Param("restart", (bool,), default=False, help="restart the running service (its config changed)"),
        Param("timeout", (int,), default=300, help="seconds a download may take"),
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """A k3s version, a sha256, an http(s) release URL."""
        if not _VERSION.fullmatch(args["version"]):
            raise ArgumentError(f"version: {args['version']!r} is not a k3s release such as v1.33.5+k3s1")
        args["sha256"] = release.check_sha256("sha256", args["sha256"])
        args["release_url"] = release.check_url("release_url", args["release_url"])
        if args["timeout"] < 1:
            raise ArgumentError("timeout: must be at least 1 second")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """Architecture, binary, images, links, unit and environment files, and both units' states."""
        role = args["role"]
        other = "agent" if role == "server" else "server"
        found = [
            release.machine_fact(),
            file_fact("binary", BINARY, content=False, sha256=True),
            links_fact(),
            file_fact("unit_file", unit_path(role)),
            file_fact("env", env_path(role), content=False, sha256=True),
            unit_fact(unit_name(role)),
            dataclasses.replace(unit_fact(unit_name(other)), key="other_unit"),
        ]
        folder = release.artifact_dir(args["airgap_dir"], ctx)
        if folder is not None:
            found += [
                file_fact(f"images:{p.name}", f"{IMAGES_DIR}/{p.name}", content=False, sha256=True)
                for p in sorted(folder.iterdir())
                if _IMAGES.fullmatch(p.name)
            ]
        else:
            found.append(downloaders_fact())
            if args["sha256"] is None:
                found.append(release.version_fact("version", BINARY, r"k3s version (\S+)"))
        return found

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """The installs, files and systemctl calls still needed, or None when k3s runs as wanted."""
        role: str = args["role"]
        unit = unit_name(role)
        _require_systemd(facts["unit"], facts["other_unit"], role)
        arch, suffix = release.k3s_arch(facts[release.MACHINE_FACT])
        steps: list[Step] = []
        notes: list[str] = []
        diffs: list[str] = []
        folder = release.artifact_dir(args["airgap_dir"], ctx)
        restart = False
        for step, note in _images(folder, arch, facts):
            steps.append(step)
            notes.append(note)
            restart = True
        binary = _binary(args, facts, folder, arch, suffix)
        if binary is not None:
            steps.append(binary[0])
            notes.append(binary[1])
            diffs.append(f"--- {BINARY}: {binary[1]}\n")
            restart = True
        for name, where in sorted(_missing_links(facts["links"]).items()):
            steps.append(Step(("ln", "-s", "k3s", where), description=f"link {name}"))
            notes.append(f"link {name}")
        env = _environment(args, facts["env"], role, ctx)
        if env is not None:
            steps.append(env[0])
            notes.append(env[1])
            diffs.append(f"--- {env_path(role)}: {env[1]} (content not shown: it holds the join token)\n")
            restart = True
        state: UnitState = facts["unit"]
        written = content_change(
            unit_path(role), facts["unit_file"], unit_file(role).encode(), mode="0644", owner=None, group=None
        )
        if written is not None:
            steps += written.steps
            notes.append(written.summary)
            diffs.append(written.diff)
            restart = True
        if written is not None or state.need_reload or state.load == "not-found":
            steps.append(Step(("systemctl", "daemon-reload")))
            notes.append("daemon-reload")
        if state.load == "not-found" or state.enabled not in ENABLED:
            steps.append(Step(("systemctl", "enable", unit)))
            notes.append(f"enable {unit}")
        if state.active not in RUNNING:
            steps.append(Step(("systemctl", "start", unit), description=f"start {unit}"))
            notes.append(f"start {unit}")
        elif restart or args["restart"]:
            steps.append(Step(("systemctl", "restart", unit), description=f"restart {unit}"))
            notes.append(f"restart {unit}")
        if not steps:
            return None
        return Change(tuple(steps), "; ".join(notes), diff="".join(diffs))


def _require_systemd(state: UnitState, other: UnitState, role: str) -> None:
    if state.systemd != "yes":
        why = WITHOUT_SYSTEMD.get(state.systemd, state.systemd)
        raise ModuleError(f"k3s: {why}; k3s runs as a systemd unit")
    other_role = "agent" if role == "server" else "server"
    if other.active in RUNNING or other.enabled in {"enabled", "enabled-runtime"}:
        raise ModuleError(
            f"k3s: this node runs {unit_name(other_role)}.service (a k3s {other_role}); changing its role to "
            f"{role} is not supported: uninstall k3s first (k3s-uninstall.sh or k3s-agent-uninstall.sh)"
        )


def _images(folder: Path | None, arch: str, facts: Facts) -> list[tuple[Step, str]]:
    """The air-gap images tarballs of the host's architecture that are missing or differ on the host."""
    if folder is None:
        return []
    found = []
    for path in sorted(folder.iterdir()):
        match = _IMAGES.fullmatch(path.name)
        if not match or match["arch"] != arch:
            continue
        artifact = release.local_artifact(folder, path.name, f"sha256sum-{arch}.txt", None)
        state: FileState = facts[f"images:{path.name}"]
        if state.kind == "file" and state.sha256 == artifact.sha256:
            continue
        dest = f"{IMAGES_DIR}/{path.name}"
        step = release.copy_step(dest, artifact.read(), artifact.sha256, mode="0644", parents=True)
        found.append((step, f"copy {path.name} to {IMAGES_DIR}"))
    return found


def _binary(args: Args, facts: Facts, folder: Path | None, arch: str, suffix: str) -> tuple[Step, str] | None:
    """The step installing the wanted binary, or None when the host has it."""
    state: FileState = facts["binary"]
    name = f"k3s{suffix}"
    version: str = args["version"]
    now = "" if state.kind != "file" else f" (replacing sha256 {state.sha256})"
    if folder is not None:
        artifact = release.local_artifact(folder, name, f"sha256sum-{arch}.txt", args["sha256"])
        if state.kind == "file" and state.sha256 == artifact.sha256 and state.mode == "0755":
            return None
        step = release.copy_step(BINARY, artifact.read(), artifact.sha256, mode="0755")
        return step, f"install k3s {version} from {artifact.path} (sha256 {artifact.sha256}){now}"
    pinned = args["sha256"]
    if state.kind == "file" and (state.sha256 == pinned if pinned else facts.get("version") == version):
        return None
    base = f"{args['release_url']}/{url_quote(version, safe='')}"
    step = release.install_step(
        BINARY,
        url=f"{base}/{name}",
        sums_url=f"{base}/sha256sum-{arch}.txt",
        name=name,
        sha256=pinned,
        tools=facts["downloaders"],
        timeout=args["timeout"],
    )
    checked = f"sha256 {pinned}" if pinned else f"sha256 from sha256sum-{arch}.txt"
    return step, f"install k3s {version} from {base}/{name} ({checked}){now}"


def _missing_links(links: dict[str, str]) -> dict[str, str]:
    """kubectl, crictl and ctr that exist nowhere yet, with the path of their link."""
    return {name: f"{BIN_DIR}/{name}" for name in LINKS if name not in links}


def _environment(args: Args, state: FileState, role: str, ctx: Context) -> tuple[Step, str] | None:
    """The step writing the environment file (K3S_TOKEN, 0600), or None when it is as wanted."""
    token: Secret | None = args["token"]
    value = token.reveal().strip() if token is not None else ""
    path = env_path(role)
    if role == "agent" and not value:
        if ctx.check:
            # the server's token is not there to read yet (check mode before the server runs)
            if state.kind == "file":
                return None
            return put_step(path, mode="0600", owner_spec="0:0", stdin=b""), f"write {path} (0600)"
        raise ModuleError(
            "k3s: an agent needs its server's join token, and none was given: the cluster's server must "
            "be part of the run (its token is read from it)"
        )
    if value and not _TOKEN.fullmatch(value):
        raise ModuleError("k3s: the join token holds characters an environment file cannot carry as they are")
    wanted = f"K3S_TOKEN={value}\n" if value else ""
    digest = hashlib.sha256(wanted.encode()).hexdigest()
    if state.kind == "file" and state.sha256 == digest and state.mode == "0600" and state.uid == 0:
        return None
    # no sha256 on the command line: even a hash of the token stays off argv
    step = dataclasses.replace(put_step(path, mode="0600", owner_spec="0:0"), stdin=Secret(wanted))
    verb = "update" if state.kind == "file" else "write"
    return step, f"{verb} {path} (0600)"
