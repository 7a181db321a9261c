"""``package``: Debian/Ubuntu packages installed or removed with apt-get."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param, Step
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.shell import quote

# name[:arch][=version], as apt-get takes it
_SPEC = re.compile(
    r"(?P<name>[a-z0-9][a-z0-9+.-]+)(?::(?P<arch>[a-z0-9-]+))?(?:=(?P<version>[A-Za-z0-9.+:~-]+))?"
)
APT_GET = (
    "env",
    "DEBIAN_FRONTEND=noninteractive",
    "apt-get",
    "-y",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
)
DPKG_FORMAT = r"${Package}\t${Architecture}\t${Version}\t${Status}\n"


@dataclass(frozen=True)
class Installed:
    """One package as dpkg knows it: architecture, version, and its status ("install ok installed")."""

    arch: str
    version: str
    status: str

    @property
    def is_installed(self) -> bool:
        """True when dpkg has it unpacked and configured."""
        return self.status.split()[-1:] == ["installed"]


@dataclass(frozen=True)
class Packages:
    """What dpkg says about the packages asked for; ``dpkg``/``apt`` say whether the tools exist."""

    dpkg: bool
    apt: bool
    known: dict[str, list[Installed]] = field(default_factory=dict)


def packages_fact(names: Sequence[str]) -> Fact:
    """A fact with dpkg's status of every package in ``names`` (bare names, no arch or version)."""
    script = "\n".join(
        (
            "if command -v apt-get >/dev/null 2>&1; then echo apt=yes; fi",
            "if command -v dpkg-query >/dev/null 2>&1; then",
            "  echo dpkg=yes",
            f"  dpkg-query -W -f={quote([DPKG_FORMAT])} {quote(list(names))} 2>/dev/null",
            "fi",
        )
    )
    return Fact("packages", script, parse_packages)


def parse_packages(stdout: str, rc: int) -> Packages:
    """The :class:`Packages` a :func:`packages_fact` snippet printed (rc 1 only says some are unknown)."""
    known: dict[str, list[Installed]] = {}
    flags = set()
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            name, arch, version, status = parts
            known.setdefault(name, []).append(Installed(arch, version, status))
        elif line.strip():
            flags.add(line.strip())
    return Packages(dpkg="dpkg=yes" in flags, apt="apt=yes" in flags, known=known)


def is_installed(spec: str, packages: Packages) -> bool:
    """Whether ``spec`` (name[:arch][=version]) is installed as asked."""
    match = _spec(spec)
    return any(
        item.is_installed and match["arch"] in (None, item.arch) and match["version"] in (None, item.version)
        for item in packages.known.get(match["name"], [])
    )


def bare_name(spec: str) -> str:
    """The package name of a spec, without architecture or version."""
    return _spec(spec)["name"]


def _spec(spec: str) -> re.Match[str]:
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ArgumentError(f"names: {spec!r} is not a package name (name, name:arch or name=version)")
    return match


@register
class Package(Module):
    """apt packages present (``apt-get install -y --no-install-recommends``, non-interactive, keeping
    changed configuration files) or absent (``apt-get remove``). ``update_cache`` refreshes the package
    lists first, and only when something is to be installed, so a host with everything runs nothing."""

    name = "package"
    help = "apt packages installed or removed"
    params = (
        Param("names", (list, str), required=True, help="package names (name, name:arch or name=version)"),
        Param("state", (str,), default="present", choices=("present", "absent")),
        Param("update_cache", (bool,), default=False, help="apt-get update before installing"),
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """A list of package specs apt-get takes."""
        names = [args["names"]] if isinstance(args["names"], str) else args["names"]
        if not names:
            raise ArgumentError("names: give at least one package")
        for spec in names:
            if not isinstance(spec, str):
                raise ArgumentError(f"names: {spec!r} is not a package name (a string)")
            _spec(spec)
        if args["state"] == "absent" and any("=" in spec for spec in names):
            raise ArgumentError("names: a version (name=version) goes with state present only")
        args["names"] = list(dict.fromkeys(names))

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """dpkg's status of each package."""
        return (packages_fact(sorted({bare_name(spec) for spec in args["names"]})),)

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """apt-get install of the missing packages, or apt-get remove of the installed ones."""
        packages: Packages = facts["packages"]
        if not packages.dpkg or not packages.apt:
            raise ModuleError("package: the host has no dpkg-query/apt-get (this module manages apt hosts)")
        if args["state"] == "present":
            missing = [spec for spec in args["names"] if not is_installed(spec, packages)]
            if not missing:
                return None
            steps = []
            if args["update_cache"]:
                steps.append(Step((*APT_GET, "update"), description="refresh the package lists"))
            steps.append(
                Step((*APT_GET, "install", "--no-install-recommends", *missing), description="install")
            )
            return Change(tuple(steps), f"install {' '.join(missing)}")
        present = [spec for spec in args["names"] if is_installed(spec, packages)]
        if not present:
            return None
        return Change(
            (Step((*APT_GET, "remove", *present), description="remove"),), f"remove {' '.join(present)}"
        )
