"""Release artifacts of a pinned tool (k3s, flux), for the modules that install them.

Two sources, as k3s' own install script knows them: an artifact folder on the controller (air-gapped
nodes: the release's files as downloaded, with the release's checksum file beside them), or the
release URL, downloaded on the host. Either way the sha256 is checked before anything is installed:
against a pinned sum when one is given, else against the release's checksum file (on the controller
for a folder, downloaded next to the artifact for a URL, as ``install.sh`` does).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fluxops.runner.module import ArgumentError, Context, Fact, Step
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import put_step
from fluxops.runner.modules.get_url import Downloaders
from fluxops.shell import quote

SHA256 = re.compile(r"[0-9a-f]{64}")
MACHINE_FACT = "machine"

# uname -m -> (k3s ARCH, suffix of the k3s binary's name), as k3s' install.sh maps them
_K3S_ARCHES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "-arm64"),
    "arm64": ("arm64", "-arm64"),
    "s390x": ("s390x", "-s390x"),
}
# uname -m -> the architecture in flux's release file names
_FLUX_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def machine_fact() -> Fact:
    """A fact with the host's machine hardware name (``uname -m``)."""
    return Fact(MACHINE_FACT, "uname -m", lambda out, rc: out.strip(), isolated=False)  # a fixed script


def k3s_arch(machine: str) -> tuple[str, str]:
    """k3s' architecture name and binary suffix for ``uname -m``'s answer (armv7l -> arm, -armhf)."""
    if machine in _K3S_ARCHES:
        return _K3S_ARCHES[machine]
    if machine.startswith("arm"):
        return "arm", "-armhf"
    raise ModuleError(f"k3s publishes no binary for this host's architecture ({machine or 'unknown'})")


def flux_arch(machine: str) -> str:
    """The architecture in flux's release names for ``uname -m``'s answer."""
    if machine in _FLUX_ARCHES:
        return _FLUX_ARCHES[machine]
    if machine.startswith("arm"):
        return "arm"
    raise ModuleError(f"flux publishes no CLI for this host's architecture ({machine or 'unknown'})")


def check_sha256(name: str, value: str | None) -> str | None:
    """A pinned sha256 argument normalized (lower case, no ``sha256:``), None when empty."""
    if not value:
        return None
    value = value.lower().removeprefix("sha256:")
    if not SHA256.fullmatch(value):
        raise ArgumentError(f"{name}: {value!r} is not 64 hexadecimal digits")
    return value


def check_url(name: str, value: str) -> str:
    """An http(s) base URL without its trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ArgumentError(f"{name}: {value!r} is not an http or https URL")
    return value.rstrip("/")


def artifact_dir(value: str | None, ctx: Context) -> Path | None:
    """The artifact folder on the controller (relative: to the playbook's folder), None when unset."""
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = ctx.base_dir / path
    if not path.is_dir():
        raise ArgumentError(f"no artifact folder {path} on the controller")
    return path


def read_sums(path: Path) -> dict[str, str]:
    """A release checksum file (``sha256sum`` format: ``SUM  NAME`` or ``SUM *NAME``) as name -> sum;
    empty when the file is missing."""
    if not path.is_file():
        return {}
    sums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and SHA256.fullmatch(parts[0].lower()):
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


@dataclass(frozen=True)
class LocalArtifact:
    """A release file in the artifact folder and the sha256 it must have."""

    path: Path
    sha256: str

    def read(self) -> bytes:
        """The file's bytes, after checking them against the sha256 (ModuleError on a mismatch)."""
        data = self.path.read_bytes()
        got = hashlib.sha256(data).hexdigest()
        if got != self.sha256:
            raise ModuleError(f"{self.path} has sha256 {got}, not {self.sha256}; nothing was installed")
        return data


def local_artifact(folder: Path, name: str, sums_name: str, pinned: str | None) -> LocalArtifact:
    """``name`` in ``folder`` and its wanted sha256: the pinned one, else the checksum file's entry."""
    path = folder / name
    if not path.is_file():
        raise ModuleError(f"no {name} in the artifact folder {folder}")
    listed = read_sums(folder / sums_name).get(name)
    if pinned and listed and pinned != listed:
        raise ModuleError(
            f"{folder / sums_name} lists sha256 {listed} for {name}, but the pinned sha256 is {pinned}"
        )
    wanted = pinned or listed
    if wanted is None:
        raise ModuleError(
            f"no sha256 for {name}: put the release's {sums_name} into {folder}, or pin the sum"
        )
    return LocalArtifact(path, wanted)


def copy_step(dest: str, data: bytes, sha256: str, *, mode: str, parents: bool = False) -> Step:
    """A step writing ``data`` (any bytes: an executable, a tarball) to ``dest`` atomically, its sha256
    checked on the host before the rename. The bytes go on stdin as base64, decoded on the host: the
    remote shell carries stdin as text."""
    return put_step(
        dest,
        mode=mode,
        owner_spec="0:0",
        sha256=sha256,
        parents=parents,
        stdin=base64.b64encode(data),
        source=("base64", "-d"),
        description=f"write {dest}",
    )


# Installs an executable from a release URL: $1 dest, $2 URL, $3 checksum file URL, $4 the artifact's
# name in that file, $5 pinned sha256 (empty: take it from the checksum file), $6 member to extract
# from a .tar.gz (empty: the download is the executable), $7 curl or wget, $8 seconds per download.
# Everything happens in a temp folder beside dest (so the final rename is atomic), removed on exit.
INSTALL_SCRIPT = r"""set -e
dest=$1 url=$2 sums=$3 name=$4 sum=$5 member=$6 dl=$7 tmo=$8
get() {
  if [ "$dl" = curl ]; then curl -fsSL --proto '=https,http' --max-time "$tmo" -o "$2" "$1"
  else wget -q -T "$tmo" -O "$2" "$1"; fi
}
d=$(dirname "$dest")
mkdir -p "$d"
t=$(mktemp -d "$d/.fluxops-release.XXXXXX")
trap 'rm -rf "$t"' EXIT
if [ -z "$sum" ]; then
  get "$sums" "$t/sums"
  sum=$(awk -v n="$name" '$2 == n || $2 == "*" n { print $1; exit }' "$t/sums")
  if [ -z "$sum" ]; then echo "fluxops: $sums does not list $name" >&2; exit 1; fi
fi
get "$url" "$t/download"
got=$(sha256sum < "$t/download" | cut -d " " -f 1)
if [ "$got" != "$sum" ]; then
  echo "fluxops: sha256 of $url is $got, not $sum; nothing was installed" >&2
  exit 1
fi
if [ -n "$member" ]; then
  mkdir "$t/x"
  tar -xzf "$t/download" -C "$t/x" "$member"
  mv "$t/x/$member" "$t/new"
else
  mv "$t/download" "$t/new"
fi
chown 0:0 "$t/new"
chmod 0755 "$t/new"
mv -f "$t/new" "$dest"
"""


def install_step(
    dest: str,
    *,
    url: str,
    sums_url: str,
    name: str,
    sha256: str | None,
    tools: Downloaders,
    timeout: int,
    member: str = "",
) -> Step:
    """The step that downloads ``url`` on the host, checks it and installs it (or its ``member``)."""
    if tools.curl:
        tool = "curl"
    elif tools.wget:
        tool = "wget"
    else:
        raise ModuleError(f"the host has neither curl nor wget to download {url}")
    argv = ("sh", "-c", INSTALL_SCRIPT, "sh", dest, url, sums_url, name, sha256 or "", member, tool)
    argv += (str(timeout),)
    return Step(argv, description=f"install {dest} from {url}")


def version_fact(key: str, executable: str, pattern: str) -> Fact:
    """A fact with the version ``executable --version`` reports (the first group of ``pattern``), or ""."""
    regex = re.compile(pattern)

    def parse(out: str, rc: int) -> str:
        found = regex.search(out)
        return found.group(1) if found and rc == 0 else ""

    exe = quote([executable])
    script = f"if [ -x {exe} ]; then {exe} --version 2>/dev/null | head -n 3; fi"
    return Fact(key, script, parse)
