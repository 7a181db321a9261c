"""``flux_cli``: the flux CLI at a pinned version, installed as k3s is (artifact folder or checked download).

Flux publishes the CLI as ``flux_<version>_linux_<arch>.tar.gz`` with ``flux_<version>_checksums.txt``.
From an artifact folder the tarball's sha256 is checked here (pinned, or the checksum file's), the
``flux`` executable is taken out of it here and sent on stdin, its own sha256 checked on the host before
it is renamed into place; ok when the host's file has that sha256. Without a folder the host downloads
the tarball (and, unless the sum is pinned, the checksum file), checks it and unpacks ``flux``; ok when
the installed CLI reports the version.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Sequence
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param
from fluxops.runner.modules import _release as release
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import FileState, check_path, file_fact
from fluxops.runner.modules.get_url import downloaders_fact

RELEASES = "https://github.com/fluxcd/flux2/releases/download"
DEST = "/usr/local/bin/flux"
MEMBER = "flux"
_VERSION = re.compile(r"v?(\d+\.\d+\.\d+(-rc\.\d+)?)")


def tarball_name(version: str, arch: str) -> str:
    """The release tarball of ``version`` (without its ``v``) for ``arch``."""
    return f"flux_{version}_linux_{arch}.tar.gz"


def sums_name(version: str) -> str:
    """The release's checksum file."""
    return f"flux_{version}_checksums.txt"


def executable_from(data: bytes, name: str) -> bytes:
    """The ``flux`` executable inside the release tarball ``data`` (ModuleError when it is not there)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            member = archive.getmember(MEMBER)
            extracted = archive.extractfile(member) if member.isfile() else None
            if extracted is None:
                raise KeyError(MEMBER)
            return extracted.read()
    except (KeyError, tarfile.TarError) as exc:
        raise ModuleError(f"flux_cli: {name} holds no file {MEMBER} ({exc})") from None


@register
class FluxCli(Module):
    """The flux CLI at ``version`` in ``dest`` (0755); see the module's docstring."""

    name = "flux_cli"
    help = "the flux CLI at a pinned version (artifact folder or checked download)"
    params = (
        Param("version", (str,), required=True, help="the flux release, e.g. v2.7.2"),
        Param("artifact_dir", (str,), help="artifact folder on the controller (empty: download)"),
        Param("sha256", (str,), help="pinned sha256 of the release tarball (empty: the checksum file)"),
        Param("release_url", (str,), default=RELEASES, help="where releases are downloaded from"),
        Param("dest", (str,), default=DEST, help="where the CLI goes on the host"),
        Param("timeout", (int,), default=300, help="seconds a download may take"),
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """A flux version (kept without its ``v``), a sha256, an http(s) URL, an absolute dest."""
        found = _VERSION.fullmatch(args["version"])
        if not found:
            raise ArgumentError(f"version: {args['version']!r} is not a flux release such as v2.7.2")
        args["version"] = found[1]
        args["sha256"] = release.check_sha256("sha256", args["sha256"])
        args["release_url"] = release.check_url("release_url", args["release_url"])
        check_path("dest", args["dest"])
        if args["timeout"] < 1:
            raise ArgumentError("timeout: must be at least 1 second")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """Architecture and the installed file; for a download, the tools and the installed version."""
        found = [release.machine_fact(), file_fact("dest", args["dest"], content=False, sha256=True)]
        if release.artifact_dir(args["artifact_dir"], ctx) is None:
            version = release.version_fact("version", args["dest"], r"flux version v?(\S+)")
            found += [downloaders_fact(), version]
        return found

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """The install, or None when the host has the wanted CLI."""
        dest: str = args["dest"]
        version: str = args["version"]
        state: FileState = facts["dest"]
        if state.kind in {"directory", "other"}:
            raise ModuleError(f"flux_cli: {dest} exists and is not a file ({state.kind})")
        arch = release.flux_arch(facts[release.MACHINE_FACT])
        name = tarball_name(version, arch)
        folder = release.artifact_dir(args["artifact_dir"], ctx)
        now = f" (replacing sha256 {state.sha256})" if state.kind == "file" else ""
        if folder is not None:
            artifact = release.local_artifact(folder, name, sums_name(version), args["sha256"])
            executable = executable_from(artifact.read(), name)
            digest = hashlib.sha256(executable).hexdigest()
            if state.kind == "file" and state.sha256 == digest and state.mode == "0755":
                return None
            step = release.copy_step(dest, executable, digest, mode="0755", parents=True)
            return Change((step,), f"install flux {version} from {artifact.path} (sha256 {digest}){now}")
        if state.kind == "file" and facts["version"] == version:
            return None
        base = f"{args['release_url']}/v{version}"
        step = release.install_step(
            dest,
            url=f"{base}/{name}",
            sums_url=f"{base}/{sums_name(version)}",
            name=name,
            sha256=args["sha256"],
            tools=facts["downloaders"],
            timeout=args["timeout"],
            member=MEMBER,
        )
        checked = f"sha256 {args['sha256']}" if args["sha256"] else f"sha256 from {sums_name(version)}"
        return Change((step,), f"install flux {version} from {base}/{name} ({checked}){now}")
