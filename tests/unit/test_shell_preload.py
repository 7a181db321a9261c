"""The SSH stack is imported once before host threads start, and only when a host is remote."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHECK = textwrap.dedent(
    """
    import sys
    from fluxops.inventory.model import Host
    from fluxops.shell import RemoteShell, local, preload
    shells = [local()]
    if sys.argv[1] == "remote":
        shells.append(RemoteShell(Host(name="n", cluster="lab", address="127.0.0.1", port=1)))
    preload(shells)
    print(" ".join(m for m in ("paramiko", "fabric.runners", "invoke.exceptions") if m in sys.modules))
    """
)


def _loaded(kind: str) -> str:
    run = subprocess.run([sys.executable, "-c", CHECK, kind], capture_output=True, text=True, check=True)
    return run.stdout.strip()


def test_preload_imports_fabric_and_paramiko_when_a_host_is_remote() -> None:
    assert _loaded("remote") == "paramiko fabric.runners invoke.exceptions"


def test_preload_leaves_the_ssh_stack_unloaded_for_local_shells() -> None:
    assert "paramiko" not in _loaded("local")
