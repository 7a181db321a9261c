"""The client's side of the sandbox: its key, known_hosts lines and an ssh_config naming each host."""

from __future__ import annotations

from pathlib import Path

from fluxops import known_hosts
from fluxops.inventory import Host
from fluxops.shell import local

SSH_CONFIG_FILE = "ssh_config"


def keygen(path: Path, comment: str) -> None:
    """A fresh passphrase-less ed25519 key at ``path`` (0600), replacing any there."""
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    local().run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    path.chmod(0o600)


def write_known_hosts(path: Path, entries: dict[str, str]) -> None:
    """Replace the lines of the sandbox's host names in ``path`` with fresh keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    if path.is_file():
        kept = [ln for ln in path.read_text().splitlines() if ln.split(" ", 1)[0] not in entries]
    lines = kept + [f"{name} {key}" for name, key in entries.items()]
    path.write_text("\n".join(lines) + "\n")


def known_name(host: Host) -> str:
    """The host as known_hosts names it: the address, or ``[address]:port`` off port 22."""
    return known_hosts.host_name(host.address, host.port)


def ssh_config_path(state_dir: Path) -> Path:
    """Where ``up`` writes the sandbox's ssh_config."""
    return state_dir / SSH_CONFIG_FILE


def write_ssh_config(state_dir: Path, hosts: list[Host]) -> None:
    """An ssh_config so ``ssh -F .sandbox/ssh_config n5`` and testinfra reach the hosts by name."""
    blocks = []
    for host in hosts:
        blocks.append(
            f"Host {host.name}\n"
            f"  HostName {host.address}\n"
            f"  Port {host.port}\n"
            f"  User {host.user}\n"
            f"  IdentityFile {host.key_file}\n"
            f"  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {host.known_hosts}\n"
            f"  StrictHostKeyChecking yes\n"
            f"  LogLevel ERROR\n"
        )
    ssh_config_path(state_dir).write_text("\n".join(blocks))
