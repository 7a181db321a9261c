"""An artifact folder of the simulator's commands, laid out as the k3s and flux releases lay out their files.

``build`` writes ``k3s`` (``k3s-arm64``, ... by architecture) with the release's ``sha256sum-<arch>.txt``,
optionally a small ``k3s-airgap-images-<arch>.tar.zst``, and ``flux_<v>_linux_<arch>.tar.gz`` (holding
``flux``) with ``flux_<v>_checksums.txt``: what an operator downloads for an air-gapped node. The
executables are :mod:`fluxops.sim.launcher` scripts, which run this checkout's interpreter (a sandbox
host sees it through its overlay of ``/``); they pin the versions they stand for, so their sha256
differ from one version to another. ``playbooks/node.yaml`` installs the folder with ``k3s_airgap_dir``
exactly as it installs the real releases (real k3s and flux cannot run on a sandbox host).
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import secrets
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import fluxops
from fluxops.errors import FluxopsError
from fluxops.runner.modules._release import flux_arch, k3s_arch
from fluxops.sim import launcher


@dataclass(frozen=True)
class Artifacts:
    """The folder and the sha256 of what it holds, by file name."""

    folder: Path
    k3s_name: str
    flux_tarball: str
    sums: dict[str, str]
    flux_sha256: str  # of the flux executable inside the tarball

    @property
    def k3s_sha256(self) -> str:
        """The k3s executable's sha256."""
        return self.sums[self.k3s_name]


def build(
    folder: Path, *, k3s_version: str, flux_version: str, images: bool = False, machine: str = ""
) -> Artifacts:
    """Write the artifact folder for the given versions (flux's without its ``v``) and architecture."""
    machine = machine or platform.machine()
    arch, suffix = k3s_arch(machine)
    flux_version = flux_version.removeprefix("v")
    folder.mkdir(parents=True, exist_ok=True)
    k3s_name = f"k3s{suffix}"
    files = {k3s_name: launcher.script("k3s", k3s_version).encode()}
    if images:
        files[f"k3s-airgap-images-{arch}.tar.zst"] = b"simulated images " + secrets.token_bytes(64)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / k3s_name).chmod(0o755)
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    (folder / f"sha256sum-{arch}.txt").write_text("".join(f"{s}  {n}\n" for n, s in sums.items()))

    flux = launcher.script("flux", flux_version).encode()
    tarball = f"flux_{flux_version}_linux_{flux_arch(machine)}.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("flux")
        info.size, info.mode = len(flux), 0o755
        archive.addfile(info, io.BytesIO(flux))
    (folder / tarball).write_bytes(buffer.getvalue())
    sums[tarball] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (folder / f"flux_{flux_version}_checksums.txt").write_text(f"{sums[tarball]}  {tarball}\n")
    return Artifacts(folder, k3s_name, tarball, sums, hashlib.sha256(flux).hexdigest())


def check_visible() -> None:
    """Fail with what to do when the interpreter the launchers name, or the packages it imports, lie on
    another file system than ``/`` (a bind-mounted checkout aside): a sandbox host's root is an overlay
    of ``/`` alone."""
    import yaml

    from fluxops.sandbox.container import MASKED

    root = os.stat("/").st_dev
    for what, path in (
        ("interpreter", Path(sys.executable).resolve()),
        ("fluxops package", Path(fluxops.__file__).resolve().parent),
        ("site-packages", Path(yaml.__file__).resolve().parent),
    ):
        if os.stat(path).st_dev != root and not any(path.is_relative_to(m) for m in MASKED):
            raise FluxopsError(
                f"the simulator's {what} {path} is on another file system than /, which sandbox hosts "
                "do not see (their root is an overlay of / alone, docs/sandbox.md): put the checkout "
                "and its virtualenv on the root file system"
            )
