"""What this machine needs before it can run sandbox hosts (scripts/setup.sh installs the packages)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
SSHD_CONFIG = Path("/etc/ssh/sshd_config")
NETWORKD = (Path("/lib/systemd/systemd-networkd"), Path("/usr/lib/systemd/systemd-networkd"))
DBUS = (Path("/usr/bin/dbus-daemon"), Path("/usr/bin/dbus-broker"))
INCLUDES_DROPINS = re.compile(
    r"^\s*Include\s+/etc/ssh/sshd_config\.d/\*\.conf\s*$", re.MULTILINE | re.IGNORECASE
)


def capability_problems() -> list[str]:
    """Why sandbox hosts cannot run on this machine (empty when they can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("sandbox hosts need root (systemd-nspawn, overlayfs, veth interfaces)")
    commands = {
        "systemd-nspawn": "systemd-container",
        "ip": "iproute2",
        "unshare": "util-linux",
        "ssh-keygen": "openssh-client",
    }
    for command, package in commands.items():
        if shutil.which(command) is None:
            problems.append(f"`{command}` is missing (Debian package {package})")
    if not os.access(SSHD, os.X_OK):
        problems.append(f"{SSHD} is missing (Debian package openssh-server)")
    elif not SSHD_CONFIG.is_file() or not INCLUDES_DROPINS.search(SSHD_CONFIG.read_text(errors="replace")):
        problems.append(
            f"{SSHD_CONFIG} does not include /etc/ssh/sshd_config.d/*.conf, where each sandbox host's "
            "sshd settings go (Debian 12's default file does)"
        )
    if not any(os.access(p, os.X_OK) for p in NETWORKD):
        problems.append("systemd-networkd is missing (Debian package systemd)")
    if not any(os.access(p, os.X_OK) for p in DBUS):
        problems.append("no D-Bus daemon for systemd-logind (Debian package dbus)")
    return problems
