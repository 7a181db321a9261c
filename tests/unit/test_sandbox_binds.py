"""A checkout where nspawn mounts a fresh tmpfs (a clone under /tmp) is bound into the sandbox hosts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import fluxops
from fluxops.sandbox import container


def test_a_checkout_on_the_root_file_system_needs_no_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fluxops, "__file__", "/work/main/fluxops/__init__.py")
    monkeypatch.setattr(sys, "prefix", "/work/main/.venv")
    assert container.shared_binds() == []


def test_a_checkout_under_tmp_and_its_virtualenv_are_bound_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fluxops, "__file__", "/tmp/clone/fluxops/__init__.py")
    monkeypatch.setattr(sys, "prefix", "/tmp/venvs/fluxops")
    assert container.shared_binds() == ["--bind-ro=/tmp/clone", "--bind-ro=/tmp/venvs/fluxops"]


def test_a_virtualenv_inside_the_checkout_needs_no_bind_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fluxops, "__file__", "/tmp/clone/fluxops/__init__.py")
    monkeypatch.setattr(sys, "prefix", "/tmp/clone/.venv")
    assert container.shared_binds() == ["--bind-ro=/tmp/clone"]


def test_the_binds_reach_nspawn_before_the_boot_arguments() -> None:
    script = container.BOOT
    assert '"$@" --boot -- systemd.unit="$unit"' in script
    assert Path("/tmp") in container.MASKED
