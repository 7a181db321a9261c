"""fluxops reads every inventory of the corpus as ansible-inventory does: hosts, groups, every variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.inventory_oracle import ansible_lists, fluxops_list

REPO = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO / "tests" / "inventories"


def _corpus() -> list[Path]:
    """Each corpus folder's inventory (its one file beside group_vars/host_vars), and the shipped ones."""
    files = []
    for folder in sorted(p for p in CORPUS_DIR.iterdir() if p.is_dir()):
        inventories = [p for p in folder.iterdir() if p.is_file()]
        assert len(inventories) == 1, f"{folder} should hold one inventory file, has {inventories}"
        files.append(inventories[0])
    return [*files, REPO / "inventory" / "hosts.yaml", REPO / "inventory" / "sandbox.yaml"]


CORPUS = _corpus()


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, dict[str, Any]]:
    """``ansible-inventory --list`` of the whole corpus, one process per file, side by side."""
    return ansible_lists(CORPUS, tmp_path_factory.mktemp("ansible"))


def _label(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_the_corpus_covers_what_its_readme_lists() -> None:
    readme = (CORPUS_DIR / "README.md").read_text()
    folders = sorted(p.name for p in CORPUS_DIR.iterdir() if p.is_dir())
    assert len(folders) >= 11
    assert all(f"`{name}/`" in readme for name in folders)
    assert {p.suffix for p in CORPUS} >= {".yaml", ".yml", ".ini", ".json", ""}


@pytest.mark.parametrize("path", CORPUS, ids=_label)
def test_groups_and_hosts_match_ansible(path: Path, oracle: dict[Path, dict[str, Any]]) -> None:
    ours = {k: v for k, v in fluxops_list(path).items() if k != "_meta"}
    theirs = {k: v for k, v in oracle[path].items() if k != "_meta"}
    assert ours == theirs


@pytest.mark.parametrize("path", CORPUS, ids=_label)
def test_every_variable_of_every_host_matches_ansible(path: Path, oracle: dict[Path, dict[str, Any]]) -> None:
    ours = fluxops_list(path)["_meta"]["hostvars"]
    theirs = oracle[path]["_meta"]["hostvars"]
    assert sorted(ours) == sorted(theirs)
    for host, values in theirs.items():
        assert ours[host] == values, host


def test_the_comparison_sees_a_changed_value(oracle: dict[Path, dict[str, Any]]) -> None:
    """The oracle's values are real: one of them differs from what a naive YAML 1.2 reader would give."""
    yaml11 = oracle[CORPUS_DIR / "yaml11" / "hosts.yaml"]["_meta"]["hostvars"]["scalars.example.test"]
    assert (yaml11["octal"], yaml11["sexagesimal"], yaml11["bool_on"], yaml11["not_bool_y"]) == (
        420,
        90,
        True,
        "y",
    )
    siblings = oracle[CORPUS_DIR / "siblings" / "hosts.yml"]["_meta"]["hostvars"]
    assert [siblings[h]["color"] for h in ("h1", "h2", "h3")] == ["zeta", "mid", "mid"]
