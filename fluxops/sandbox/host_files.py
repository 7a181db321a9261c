"""A sandbox host's own files, written into its upper directory before it boots.

The host's root is an overlay of the machine's ``/``; what differs is written here: its name and
machine id, an empty fstab, the minimal target it boots, its address on ``host0``, its own SSH host
key, an sshd drop-in (root by key only) and the client's key in the login user's authorized_keys.
The machine's host keys and its enabled timers are hidden (overlayfs whiteouts), so the host offers
only its own key and runs none of the machine's scheduled jobs. Folders are created with the owner
and mode of the machine's folder of the same path, since overlayfs shows the upper folder's.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from fluxops.inventory import Host
from fluxops.sandbox.network import Link
from fluxops.shell import local

TARGET = "fluxops-sandbox.target"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-fluxops-sandbox.conf"
NETWORK_FILE = "/etc/systemd/network/10-fluxops-sandbox.network"  # before 80-container-host0.network
FSTAB = "# sandbox host: its root is an overlay fluxops set up; nothing else to mount\n"
HIDDEN = ("/etc/systemd/system/timers.target.wants",)
NON_INTERACTIVE_GUARD = (
    "# sandbox: stop here for non-interactive shells\ncase $- in *i*) ;; *) return;; esac\n"
)

TARGET_UNIT = """\
# What a fluxops sandbox host boots: systemd with journald, networkd, logind and sshd.
# The machine's own enabled services (multi-user.target) stay off.
[Unit]
Description=fluxops sandbox host
Requires=basic.target
Wants=systemd-journald.service systemd-networkd.service systemd-logind.service
Wants=systemd-user-sessions.service ssh.service
After=basic.target
AllowIsolate=yes
"""

NETWORK_UNIT = """\
# The sandbox host's own address (systemd-networkd, inside the host).
[Match]
Name=host0

[Network]
Address={address}/{prefix}
LinkLocalAddressing=no
IPv6AcceptRA=no
"""

SSHD_CONFIG = """\
# sshd of sandbox host {name}. Debian's sshd_config includes this file first, so its values win.
Port {port}
HostKey {host_key}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100
MaxSessions 100
"""


def prepare(host: Host, link: Link, directory: Path, client_pub: str, machine_id: str) -> str:
    """Create the host folder (upper, work, root) and the host's files; return its public host key."""
    upper = directory / "upper"
    for sub in ("upper", "work", "root"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    lower_root = os.stat("/")
    os.chown(upper, lower_root.st_uid, lower_root.st_gid)
    upper.chmod(stat.S_IMODE(lower_root.st_mode))
    _write(upper, "/etc/hostname", f"{host.name}\n")
    _write(upper, "/etc/machine-id", f"{machine_id}\n", mode=0o444)
    _write(upper, "/etc/fstab", FSTAB)
    _write(upper, f"/etc/systemd/system/{TARGET}", TARGET_UNIT)
    prefix = link.network.prefixlen
    _write(upper, NETWORK_FILE, NETWORK_UNIT.format(address=link.address, prefix=prefix))
    _write(upper, SSHD_DROPIN, SSHD_CONFIG.format(name=host.name, port=host.port, host_key=HOST_KEY))
    public = _host_key(upper, host.name)
    for path in [*_machine_host_keys(), *HIDDEN]:
        if os.path.lexists(path):
            _whiteout(upper, path)
    user = pwd.getpwnam(host.user)
    ssh_dir = f"{user.pw_dir}/.ssh"
    _make_dirs(upper, ssh_dir, mode=0o700, owner=(user.pw_uid, user.pw_gid))
    _write(upper, f"{ssh_dir}/authorized_keys", client_pub, mode=0o600, owner=(user.pw_uid, user.pw_gid))
    _quiet_bashrc(upper, Path(user.pw_dir), (user.pw_uid, user.pw_gid))
    return public


def _host_key(upper: Path, name: str) -> str:
    """A fresh ed25519 host key in the host's /etc/ssh; its public key as ``type base64``."""
    path = upper / HOST_KEY.lstrip("/")
    _make_dirs(upper, str(Path(HOST_KEY).parent))
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    local().run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"sandbox-{name}", "-f", str(path)])
    path.chmod(0o600)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


def _machine_host_keys() -> list[str]:
    """The machine's own SSH host key files, other than the one each host replaces."""
    ours = {HOST_KEY, HOST_KEY + ".pub"}
    return sorted(str(p) for p in Path("/etc/ssh").glob("ssh_host_*") if str(p) not in ours)


def _make_dirs(
    upper: Path, path: str, *, mode: int | None = None, owner: tuple[int, int] | None = None
) -> None:
    """Create ``path`` in ``upper``, each new folder with the owner and mode of the machine's."""
    current = upper
    parts = Path(path).relative_to("/").parts
    for depth, part in enumerate(parts):
        current = current / part
        lower = Path("/", *parts[: depth + 1])
        if current.is_dir():
            continue
        last = depth == len(parts) - 1
        if lower.is_dir() and not (last and (mode is not None or owner is not None)):
            info = lower.stat()
            want_mode, want_owner = stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid)
        else:
            want_mode, want_owner = (mode if mode is not None else 0o755), (owner or (0, 0))
        current.mkdir()
        os.chown(current, *want_owner)
        current.chmod(want_mode)


def _write(upper: Path, path: str, text: str, *, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> None:
    """Write ``text`` to ``path`` of the host (its parent folders made as the machine has them)."""
    _make_dirs(upper, str(Path(path).parent))
    target = upper / path.lstrip("/")
    target.unlink(missing_ok=True)
    target.write_text(text)
    os.chown(target, *owner)
    target.chmod(mode)


def _whiteout(upper: Path, path: str) -> None:
    """Hide the machine's ``path`` inside the host (an overlayfs whiteout: a 0/0 character device)."""
    _make_dirs(upper, str(Path(path).parent))
    target = upper / path.lstrip("/")
    if not os.path.lexists(target):
        os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _quiet_bashrc(upper: Path, home: Path, owner: tuple[int, int]) -> None:
    """Inside the host only: let non-interactive shells skip the machine's ~/.bashrc work."""
    bashrc = home / ".bashrc"
    if not bashrc.is_file():
        return
    _write(upper, str(bashrc), NON_INTERACTIVE_GUARD + bashrc.read_text(), owner=owner)
