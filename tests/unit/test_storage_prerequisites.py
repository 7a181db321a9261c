"""lab's storage prerequisites: node bring-up installs the ZFS tools and checks (never creates) the
dataset ``zfs_dataset`` names; the StorageClasses use that dataset. The dataset check runs through the
runner on this machine, with a stand-in ``zfs`` (this machine has no ZFS) that answers as zfs does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fluxops import inventory as inv
from fluxops.runner import execute, playbook
from fluxops.runner.results import Report, Status
from fluxops.runner.targets import local_target
from fluxops.shell import quote
from tests.layout_fixtures import pristine_root

REPO = Path(__file__).resolve().parents[2]
NODE_YAML = REPO / "playbooks" / "node.yaml"
TOOLS, CHECK = "ZFS tools", "ZFS dataset for the cluster's volumes"


def zfs_tasks() -> tuple[playbook.Playbook, playbook.Task]:
    """node.yaml with only its dataset check in its first play (as this user), and its tools task."""
    book = playbook.load(NODE_YAML)
    play = book.plays[0]
    tasks = {t.name: t for t in play.tasks}
    only = replace(play, become=False, tasks=(tasks[CHECK],))
    return replace(book, plays=(only,)), tasks[TOOLS]


@pytest.fixture
def zfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ``zfs`` first on PATH: ``zfs list -H -o name NAME`` knows the datasets listed in
    the file it returns, and answers for any other as zfs does."""
    known = tmp_path / "datasets"
    known.write_text("tank\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "zfs"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2 $3 $4" = "list -H -o name" ] || { echo "stand-in zfs: unexpected $*" >&2; exit 2; }\n'
        f'if grep -qx -- "$5" {quote([str(known)])}; then echo "$5"; exit 0; fi\n'
        "echo \"cannot open '$5': dataset does not exist\" >&2\n"
        "exit 1\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    return known


def run_check(dataset: str | None) -> Report:
    book, _ = zfs_tasks()
    host_vars = {"zfs_dataset": dataset} if dataset is not None else {}
    return execute.run(book, [local_target("n5", vars=host_vars)], execute.Options(timeout=60))


def test_a_missing_dataset_fails_bring_up_with_what_to_do(zfs: Path) -> None:
    report = run_check("tank/k8s")
    [failed] = report.failures()
    assert failed.task == CHECK and failed.status is Status.FAILED
    message = " ".join(failed.stderr.split())
    assert "the ZFS dataset tank/k8s (zfs_dataset in the inventory) is missing on n5" in message
    assert "cannot open 'tank/k8s': dataset does not exist" in message  # zfs's own words
    assert "zfs create -o mountpoint=none tank/k8s" in message and "docs/storage.md" in message
    assert zfs.read_text() == "tank\n"  # nothing created


def test_an_existing_dataset_is_ok_and_changes_nothing(zfs: Path) -> None:
    zfs.write_text("tank\ntank/k8s\n")
    report = run_check("tank/k8s")
    assert report.failures() == [] and report.changed == 0
    assert report.stats["n5"].ok == 1


def test_without_zfs_dataset_nothing_runs(zfs: Path) -> None:
    report = run_check(None)  # phx, the sandbox hosts: no ZFS
    assert report.failures() == [] and report.stats["n5"].skipped == 1
    book, tools = zfs_tasks()
    assert tools.module == "package" and tools.args["names"] == ["zfsutils-linux"]
    assert tools.when == book.plays[0].tasks[0].when == ("zfs_pool_dataset != ''",)


def test_the_inventory_names_the_dataset_of_labs_storage_classes() -> None:
    """lab's node checks the dataset its ZFS StorageClasses create volumes under; no other host has one."""
    from fluxops.layout.tree import load

    hosts = inv.load(REPO / "inventory" / "hosts.yaml")
    datasets = {h.name: h.vars.get("zfs_dataset") for h in hosts.hosts}
    assert datasets == {"n5": "tank/k8s", "phx1": None}
    sandbox = inv.load(REPO / "inventory" / "sandbox.yaml")
    assert all("zfs_dataset" not in h.vars for h in sandbox.hosts)
    lab = load(pristine_root(), "lab").clusters["lab"].phase("storage")
    assert lab is not None
    pools = {
        o["metadata"]["name"]: o["parameters"]["poolname"]
        for o in lab.objects
        if o["kind"] == "StorageClass" and o.get("provisioner") == "zfs.csi.openebs.io"
    }
    assert pools == {"openebs-zfs": "tank/k8s", "openebs-zfs-db": "tank/k8s"}
