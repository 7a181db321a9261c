"""Sandbox hosts that boot like real nodes: systemd as PID 1 and a network of their own.

Each host of a sandbox inventory is a systemd-nspawn container booted from an overlay of the
machine's ``/`` with its own upper directory (whatever a playbook writes stays in the host), its
own hostname, machine id and SSH host key, and its own network namespace with one address on the
sandbox subnet (``fluxops.sandbox.subnet``, 10.250.0.0/24 by default), reached at that address on
the inventory's port by fluxops, OpenSSH and Ansible.

The modules, one concern each:

- ``guard``: what is refused before anything starts (addresses outside the subnet, loopback, a
  subnet holding a real host's address).
- ``network``: one /30 per host, the veth's address on the machine's side, the fence routes, the
  machine-wide lock under which runs claim their /30s.
- ``host_files``: the files written into a host's upper directory (target, network, sshd, keys).
- ``container``: booting with systemd-nspawn, waiting until SSH works, stopping by PID.
- ``client_files``: client key, known_hosts lines, ssh_config.
- ``record``: the marker and state.json: what ``up`` created, so ``down`` removes exactly that.
- ``lifecycle``: ``up``, ``status`` and ``down``.

A sandbox host runs as the machine's root with the machine's file system below its own writes: it
keeps a playbook's writes off the machine, it is not a security boundary. See docs/sandbox.md.
"""

from fluxops.sandbox.capabilities import capability_problems
from fluxops.sandbox.client_files import ssh_config_path
from fluxops.sandbox.guard import DEFAULT_SUBNET
from fluxops.sandbox.host_files import SSHD_DROPIN
from fluxops.sandbox.lifecycle import HostStatus, Teardown, down, status, up
from fluxops.sandbox.record import MARKER_FILE, STATE_FILE, HostState, Record, read_record, read_state

__all__ = [
    "DEFAULT_SUBNET",
    "MARKER_FILE",
    "SSHD_DROPIN",
    "STATE_FILE",
    "HostState",
    "HostStatus",
    "Record",
    "Teardown",
    "capability_problems",
    "down",
    "read_record",
    "read_state",
    "ssh_config_path",
    "status",
    "up",
]
