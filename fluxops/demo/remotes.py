"""Each demo cluster's git remote: a bare repository on the cluster's server, reached over SSH.

Flux on the node reads it with a deploy key (its public half in root's ``authorized_keys`` with
``restrict``), exactly as it reads a forge; this machine pushes to it with the sandbox's client key.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from fluxops import inventory as inv
from fluxops.demo.workspace import git
from fluxops.errors import FluxopsError
from fluxops.shell import RemoteShell

REMOTE_PATH = "/srv/git/fluxops.git"
DEPLOY_COMMENT = "fluxops-demo-deploy"


def url_of(host: inv.Host) -> str:
    """The remote's URL as Flux and git read it."""
    return f"ssh://{host.user}@{host.address}:{host.port}{REMOTE_PATH}"


def make_deploy_key(path: Path) -> str:
    """A new ed25519 deploy key at ``path`` (0600, no passphrase); its public line."""
    done = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", DEPLOY_COMMENT, "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise FluxopsError(f"ssh-keygen could not make the deploy key {path}: {done.stderr.strip()}")
    return path.with_suffix(".pub").read_text().strip()


def serve(shell: RemoteShell, deploy_public: str) -> None:
    """A bare repository on the host, and the deploy key allowed to read it."""
    script = (
        f"set -e; umask 022; git init --quiet --bare -b main {REMOTE_PATH}; "
        "mkdir -p -m 700 ~/.ssh; umask 077; cat >> ~/.ssh/authorized_keys"
    )
    shell.run(["sh", "-c", script], stdin=f"restrict {deploy_public}\n", timeout=60)


def ssh_command(host: inv.Host) -> str:
    """The ssh command git on this machine uses to reach the sandbox hosts (host key checked)."""
    argv = ["ssh", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if host.key_file is not None:
        argv += ["-i", str(Path(host.key_file).absolute())]
    if host.known_hosts is not None:
        argv += ["-o", f"UserKnownHostsFile={Path(host.known_hosts).absolute()}"]
    return shlex.join(argv)


def use_sandbox_ssh(root: Path, hosts: list[inv.Host]) -> None:
    """git in ``root`` (bootstrap's ``ls-remote`` and the demo's pushes) reaches the hosts with the
    sandbox's client key; one command serves every host, so they must share key and known_hosts."""
    commands = {ssh_command(h) for h in hosts}
    if len(commands) != 1:
        raise FluxopsError("the demo's sandbox hosts must share one client key and known_hosts file")
    git(root, "config", "core.sshCommand", commands.pop())


def push(root: Path, url: str, branch: str = "main") -> None:
    """Push ``branch`` of ``root`` to ``url``."""
    git(root, "push", "--quiet", url, f"{branch}:refs/heads/{branch}")
