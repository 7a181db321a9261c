"""System modules from data: sysctl, modprobe, package, service (facts in, commands out)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from fluxops.runner import modules
from fluxops.runner.module import ArgumentError, Change, Context, Module
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import FileState
from fluxops.runner.modules.modprobe import KernelModule, parse_kernel
from fluxops.runner.modules.package import Installed, Packages, parse_packages
from fluxops.runner.modules.service import UnitState, parse_unit
from fluxops.runner.modules.sysctl import LiveSetting, parse_live
from tests.unit.module_harness import context

ABSENT = FileState("absent")


def module(name: str) -> type[Module]:
    cls = modules.get(name)
    assert cls is not None, name
    return cls


def plan(name: str, raw: dict[str, Any], facts: dict[str, Any], ctx: Context | None = None) -> Change | None:
    cls = module(name)
    return cls().plan(cls.validate(raw), facts, ctx or context(Path("/nonexistent")))


def a_file(content: bytes) -> FileState:
    digest = hashlib.sha256(content).hexdigest()
    return FileState("file", "0644", 0, "root", 0, "root", len(content), digest, content)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("sysctl", {"name": "ip_forward", "value": 1}, "not a sysctl name"),
        ("sysctl", {"name": "net.ipv4.ip_forward"}, "needs argument value"),
        ("sysctl", {"name": "net.ipv4.ip_forward", "value": " "}, "value: empty"),
        ("sysctl", {"name": "net.ipv4.ip_forward", "value": True}, "got a boolean"),
        ("sysctl", {"name": "net.ipv4.ip_forward", "value": 1, "file": "../x.conf"}, "ending in .conf"),
        ("modprobe", {"name": "br netfilter"}, "not a kernel module name"),
        ("package", {"names": []}, "at least one package"),
        ("package", {"names": ["curl; rm -rf /"]}, "not a package name"),
        ("package", {"names": [55]}, "not a package name"),
        ("package", {"names": ["curl=8.0"], "state": "absent"}, "state present only"),
        ("service", {"name": "k3s"}, "needs state, enabled or daemon_reload"),
        ("service", {"name": "k3s", "state": "running"}, "is not one of"),
        ("service", {"name": "--now", "state": "started"}, "not a systemd unit name"),
    ],
)
def test_argument_errors(name: str, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        module(name).validate(raw)


# --- sysctl ------------------------------------------------------------------------------------

FORWARD = {"name": "net.ipv4.ip_forward", "value": 1}
CONF = "/etc/sysctl.d/90-fluxops.conf"


def test_sysctl_persists_and_applies() -> None:
    facts = {"live": LiveSetting("0", writable=True, tool=True), "file": ABSENT}
    change = plan("sysctl", FORWARD, facts)
    assert change is not None
    put, apply = change.steps
    assert put.argv[4] == CONF and put.argv[8] == "1"  # the folder is created when missing
    assert put.stdin == b"net.ipv4.ip_forward = 1\n"
    assert apply.argv == ("sysctl", "-w", "net.ipv4.ip_forward=1")
    assert "+net.ipv4.ip_forward = 1" in change.diff


def test_sysctl_is_ok_when_file_and_kernel_agree() -> None:
    persisted = a_file(b"# fluxops\nnet.ipv4.ip_forward=1\n")  # spacing is not a difference
    facts = {"live": LiveSetting("1", writable=True, tool=True), "file": persisted}
    assert plan("sysctl", FORWARD, facts) is None
    ranged = {"name": "net.ipv4.ip_local_port_range", "value": "32768 60999"}
    live = LiveSetting("32768\t60999", writable=True, tool=True)
    assert (
        plan(
            "sysctl", ranged, {"live": live, "file": a_file(b"net.ipv4.ip_local_port_range = 32768 60999\n")}
        )
        is None
    )


def test_sysctl_rewrites_the_line_and_keeps_the_others() -> None:
    persisted = a_file(b"vm.swappiness = 10\nnet.ipv4.ip_forward = 0\n")
    facts = {"live": LiveSetting("1", writable=True, tool=True), "file": persisted}
    change = plan("sysctl", FORWARD, facts)
    assert change is not None and len(change.steps) == 1  # the kernel already has 1
    assert change.steps[0].stdin == b"vm.swappiness = 10\nnet.ipv4.ip_forward = 1\n"


def test_sysctl_read_only_in_a_container() -> None:
    watches = {"name": "fs.inotify.max_user_watches", "value": 524288}
    persisted = a_file(b"fs.inotify.max_user_watches = 524288\n")
    ok = {"live": LiveSetting("524288", writable=False, tool=True), "file": persisted}
    assert plan("sysctl", watches, ok) is None
    differs = {"live": LiveSetting("8192", writable=False, tool=True), "file": persisted}
    with pytest.raises(ModuleError, match="read-only here"):
        plan("sysctl", watches, differs)


def test_sysctl_of_a_key_the_kernel_does_not_have_yet_is_applied() -> None:
    bridge = {"name": "net.bridge.bridge-nf-call-iptables", "value": 1}
    change = plan("sysctl", bridge, {"live": LiveSetting(None, writable=False, tool=True), "file": ABSENT})
    assert change is not None and change.steps[-1].argv == (
        "sysctl",
        "-w",
        "net.bridge.bridge-nf-call-iptables=1",
    )
    assert "not in the kernel yet" in change.summary


def test_sysctl_without_the_sysctl_command() -> None:
    with pytest.raises(ModuleError, match="install procps"):
        plan("sysctl", FORWARD, {"live": LiveSetting("0", writable=True, tool=False), "file": ABSENT})


def test_parse_live() -> None:
    assert parse_live("tool=yes\nwritable=yes\nvalue=1\n", 0) == LiveSetting("1", True, True)
    assert parse_live("tool=yes\n", 0) == LiveSetting(None, False, True)
    assert parse_live("tool=yes\nvalue=32768\t60999\n", 0).value == "32768\t60999"
    assert parse_live("value=line one\nline two\n", 0).value == "line one\nline two"


# --- modprobe ----------------------------------------------------------------------------------


def test_modprobe_loads_and_persists() -> None:
    facts = {"kernel": KernelModule(present=False, modprobe="/usr/sbin/modprobe"), "file": ABSENT}
    change = plan("modprobe", {"name": "br_netfilter"}, facts)
    assert change is not None
    put, load = change.steps
    assert put.argv[4] == "/etc/modules-load.d/br_netfilter.conf" and put.stdin == b"br_netfilter\n"
    assert load.argv == ("/usr/sbin/modprobe", "br_netfilter")


def test_modprobe_is_ok_when_loaded_or_built_in_and_persisted() -> None:
    facts = {"kernel": KernelModule(present=True, modprobe=""), "file": a_file(b"br_netfilter\n")}
    assert plan("modprobe", {"name": "br_netfilter"}, facts) is None
    only_file = plan("modprobe", {"name": "overlay"}, {"kernel": KernelModule(True, ""), "file": ABSENT})
    assert only_file is not None and len(only_file.steps) == 1 and only_file.steps[0].stdin == b"overlay\n"


def test_modprobe_keeps_other_lines_of_the_file() -> None:
    facts = {"kernel": KernelModule(True, "/sbin/modprobe"), "file": a_file(b"# loaded at boot\n")}
    change = plan("modprobe", {"name": "overlay"}, facts)
    assert change is not None and change.steps[0].stdin == b"# loaded at boot\noverlay\n"


def test_modprobe_without_modprobe_says_what_is_missing() -> None:
    facts = {"kernel": KernelModule(present=False, modprobe=""), "file": ABSENT}
    with pytest.raises(ModuleError, match="br_netfilter is not loaded and the host has no modprobe"):
        plan("modprobe", {"name": "br_netfilter"}, facts)


def test_parse_kernel() -> None:
    assert parse_kernel("present=yes\nmodprobe=/usr/sbin/modprobe\n", 0) == KernelModule(
        True, "/usr/sbin/modprobe"
    )
    assert parse_kernel("", 0) == KernelModule(False, "")


# --- package -----------------------------------------------------------------------------------

DPKG_OUTPUT = (
    "apt=yes\ndpkg=yes\n"
    "curl\tamd64\t7.88.1-10+deb12u8\tinstall ok installed\n"
    "libc6\tamd64\t2.36-9+deb12u14\tinstall ok installed\n"
    "libc6\ti386\t2.36-9+deb12u14\tdeinstall ok config-files\n"
    "nfs-common\tamd64\t1:2.6.2-4\tdeinstall ok config-files\n"
)
PACKAGES = parse_packages(DPKG_OUTPUT, 1)


def test_parse_packages_of_dpkg_query_output() -> None:
    assert PACKAGES.dpkg and PACKAGES.apt
    assert PACKAGES.known["libc6"] == [
        Installed("amd64", "2.36-9+deb12u14", "install ok installed"),
        Installed("i386", "2.36-9+deb12u14", "deinstall ok config-files"),
    ]
    assert not PACKAGES.known["nfs-common"][0].is_installed
    assert parse_packages("", 0) == Packages(dpkg=False, apt=False)


def test_package_installs_what_is_missing_non_interactively() -> None:
    raw = {"names": ["curl", "nfs-common", "open-iscsi"], "update_cache": True}
    change = plan("package", raw, {"packages": PACKAGES})
    assert change is not None
    update, install = (step.argv for step in change.steps)
    assert update[:3] == ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get") and update[-1] == "update"
    assert install[:3] == ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get")
    assert "-y" in install and install[-4:] == (
        "install",
        "--no-install-recommends",
        "nfs-common",
        "open-iscsi",
    )
    assert change.summary == "install nfs-common open-iscsi"


def test_package_ok_cases_run_nothing_not_even_apt_get_update() -> None:
    assert plan("package", {"names": ["curl", "libc6"], "update_cache": True}, {"packages": PACKAGES}) is None
    assert plan("package", {"names": "curl=7.88.1-10+deb12u8"}, {"packages": PACKAGES}) is None
    assert plan("package", {"names": ["nfs-common"], "state": "absent"}, {"packages": PACKAGES}) is None


def test_package_versions_architectures_and_removal() -> None:
    upgrade = plan("package", {"names": "curl=8.0.0-1"}, {"packages": PACKAGES})
    assert upgrade is not None and upgrade.steps[-1].argv[-1] == "curl=8.0.0-1"
    other_arch = plan("package", {"names": "libc6:i386"}, {"packages": PACKAGES})
    assert other_arch is not None and other_arch.steps[-1].argv[-1] == "libc6:i386"
    remove = plan("package", {"names": ["curl", "nfs-common"], "state": "absent"}, {"packages": PACKAGES})
    assert remove is not None and remove.steps[0].argv[-2:] == ("remove", "curl")


def test_package_on_a_host_without_apt() -> None:
    with pytest.raises(ModuleError, match="no dpkg-query/apt-get"):
        plan("package", {"names": "curl"}, {"packages": Packages(dpkg=False, apt=False)})


# --- service -----------------------------------------------------------------------------------

RUNNING = UnitState("yes", active="active", enabled="enabled", load="loaded")
STOPPED = UnitState("yes", active="inactive", enabled="disabled", load="loaded")


def argvs(change: Change | None) -> list[tuple[str, ...]]:
    assert change is not None
    return [step.argv for step in change.steps]


def test_service_started_and_enabled() -> None:
    raw = {"name": "k3s", "state": "started", "enabled": True}
    assert plan("service", raw, {"unit": RUNNING}) is None
    assert argvs(plan("service", raw, {"unit": STOPPED})) == [
        ("systemctl", "enable", "k3s"),
        ("systemctl", "start", "k3s"),
    ]
    static = UnitState("yes", active="active", enabled="static", load="loaded")
    assert plan("service", raw, {"unit": static}) is None


def test_service_stopped_and_disabled() -> None:
    raw = {"name": "k3s", "state": "stopped", "enabled": False}
    assert plan("service", raw, {"unit": STOPPED}) is None
    assert argvs(plan("service", raw, {"unit": RUNNING})) == [
        ("systemctl", "disable", "k3s"),
        ("systemctl", "stop", "k3s"),
    ]


def test_service_restarted_and_reloaded_always_act() -> None:
    assert argvs(plan("service", {"name": "k3s", "state": "restarted"}, {"unit": RUNNING})) == [
        ("systemctl", "restart", "k3s")
    ]
    assert argvs(plan("service", {"name": "ssh", "state": "reloaded"}, {"unit": RUNNING})) == [
        ("systemctl", "reload", "ssh")
    ]
    assert argvs(plan("service", {"name": "ssh", "state": "reloaded"}, {"unit": STOPPED})) == [
        ("systemctl", "start", "ssh")
    ]


def test_service_daemon_reload_only_when_systemd_asks_for_it() -> None:
    raw = {"name": "k3s", "state": "started", "daemon_reload": True}
    assert plan("service", raw, {"unit": RUNNING}) is None
    stale = UnitState("yes", active="active", enabled="enabled", load="loaded", need_reload=True)
    assert argvs(plan("service", raw, {"unit": stale})) == [("systemctl", "daemon-reload")]


def test_service_without_systemd_gets_a_clear_message() -> None:
    with pytest.raises(
        ModuleError, match="the host has no systemctl; this module manages systemd units only"
    ):
        plan("service", {"name": "k3s", "state": "started"}, {"unit": UnitState("no-systemctl")})
    with pytest.raises(ModuleError, match="systemd is not running on the host"):
        plan("service", {"name": "k3s", "state": "started"}, {"unit": UnitState("not-booted")})


def test_service_of_a_unit_not_installed_yet() -> None:
    missing = UnitState("yes", active="inactive", enabled="", load="not-found")
    raw = {"name": "k3s", "state": "started", "enabled": True}
    with pytest.raises(ModuleError, match="systemd has no unit k3s"):
        plan("service", raw, {"unit": missing})
    checked = plan("service", raw, {"unit": missing}, context(Path("/nonexistent"), check=True))
    assert checked is not None and "no unit k3s on the host yet" in checked.summary


def test_parse_unit_of_systemctl_output() -> None:
    out = "systemd=yes\nactive=active\nenabled=enabled\nLoadState=loaded\nNeedDaemonReload=no\n"
    assert parse_unit(out, 0) == RUNNING
    missing = "systemd=yes\nactive=inactive\nenabled=\nLoadState=not-found\nNeedDaemonReload=no\n"
    assert parse_unit(missing, 0).load == "not-found"
    assert parse_unit("systemd=not-booted\n", 0) == UnitState("not-booted")
