"""Launcher scripts that install the simulator's commands as ``k3s`` and ``flux`` on a sandbox host.

A sandbox host sees this machine's files through its overlay of ``/``, so a launcher is a Python
script run by this checkout's interpreter; it pins the version the binary stands for (what ``k3s
--version`` and ``flux --version`` print, and what a k3s node reports). A ``kubectl`` symbolic link to
the ``k3s`` launcher is kubectl, as k3s's installer links it.
"""

from __future__ import annotations

import sys

VERSION_ENV = {"k3s": "FLUXOPS_SIM_K3S_VERSION", "flux": "FLUXOPS_SIM_FLUX_VERSION"}


def script(tool: str, version: str, python: str | None = None) -> str:
    """The launcher of ``tool`` (k3s or flux) standing for ``version``."""
    if tool not in VERSION_ENV:
        raise ValueError(
            f"no launcher for {tool!r}: the simulator's commands are k3s (and its kubectl) and flux"
        )
    return (
        f"#!{python or sys.executable}\n"
        f'"""The fluxops simulator\'s {tool}, standing for {tool} {version} (fluxops.sim.launcher)."""\n'
        "import os\nimport sys\n\n"
        f"os.environ.setdefault({VERSION_ENV[tool]!r}, {version!r})\n"
        f"from fluxops.sim.cli_{tool} import main\n\n"
        "sys.exit(main(sys.argv))\n"
    )
