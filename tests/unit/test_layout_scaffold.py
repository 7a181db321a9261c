"""layout.new-cluster: the scaffold validates at once, and edited files keep comments and key order."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml.comments import CommentedMap

from fluxops.errors import LayoutError
from fluxops.layout.roundtrip import dump_like, load_docs
from fluxops.layout.scaffold import new_cluster, pool_addresses
from fluxops.layout.validate import validate
from tests.layout_fixtures import copy_tree


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_tree(tmp_path / "repo")


def _keys(value: object) -> object:
    """The key order of a document, recursively."""
    if isinstance(value, dict):
        return [(k, _keys(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_keys(v) for v in value]
    return None


def _comments(path: Path) -> list[str]:
    return [
        line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip().startswith("#")
    ]


def test_new_cluster_validates_at_once(repo: Path) -> None:
    result = new_cluster(repo, "edge", like="lab", address="10.20.0.5")
    tree, findings = validate(repo, "edge")
    assert findings.errors == [], [f"{f.where} {f.message}" for f in findings.errors]
    edge = tree.clusters["edge"]
    assert [p.name for p in edge.phases if p.name in ("crds", "apps")]
    for phase in edge.phases:
        if phase.name != "crds":
            assert phase.path.startswith("./k8s/clusters/edge/"), phase.path
    apps = edge.phase("apps")
    assert apps is not None and apps.objects == []
    pools = [o for p in edge.phases for o in p.objects if o.get("kind") == "IPAddressPool"]
    assert pools and pools[0]["spec"]["addresses"] == ["10.20.0.5/32"]
    assert not list((repo / "k8s/clusters/edge").rglob("*.sops.yaml"))
    assert result.omitted_secrets and all(
        "invoke secrets.new --cluster edge" in s["command"] for s in result.omitted_secrets
    )
    # The other clusters still validate, untouched.
    assert validate(repo)[1].errors == []


def test_edited_files_keep_comments_and_key_order(repo: Path) -> None:
    result = new_cluster(repo, "edge", like="lab")
    lab, edge = repo / "k8s/clusters/lab", repo / "k8s/clusters/edge"
    edited = 0
    for rel in result.written:
        target = repo / rel
        source = lab / target.relative_to(edge)
        if not source.exists() or target.suffix != ".yaml" or rel.endswith("edge/apps/kustomization.yaml"):
            continue
        if source.read_bytes() != target.read_bytes():
            edited += 1
        assert _comments(target) == _comments(source), rel
        src_docs, new_docs = load_docs(source), load_docs(target)
        if "kustomization" not in target.name:
            assert [_keys(d) for d in new_docs] == [_keys(d) for d in src_docs], rel
        # A second round trip changes nothing.
        text = target.read_text(encoding="utf-8")
        assert dump_like(text, new_docs) == text, rel
    assert edited >= 4  # the phase files at least


def test_phase_file_only_changes_its_path(repo: Path) -> None:
    new_cluster(repo, "edge", like="lab")
    before = (repo / "k8s/clusters/lab/storage.yaml").read_text(encoding="utf-8")
    after = (repo / "k8s/clusters/edge/storage.yaml").read_text(encoding="utf-8")
    assert after == before.replace("clusters/lab/", "clusters/edge/")
    doc = load_docs(repo / "k8s/clusters/edge/storage.yaml")[0]
    assert isinstance(doc, CommentedMap)


@pytest.mark.parametrize(
    ("name", "like", "message"),
    [
        ("lab", "phx", "already exists"),
        ("Bad_Name", "lab", "not a DNS label"),
        ("-edge", "lab", "not a DNS label"),
        ("edge", "nowhere", "--like 'nowhere' is not a cluster"),
    ],
)
def test_refusals(repo: Path, name: str, like: str, message: str) -> None:
    before = sorted(p.name for p in (repo / "k8s/clusters").iterdir())
    with pytest.raises(LayoutError, match=message):
        new_cluster(repo, name, like=like)
    assert sorted(p.name for p in (repo / "k8s/clusters").iterdir()) == before


@pytest.mark.parametrize(
    ("address", "pool"),
    [
        ("10.0.0.5", ["10.0.0.5/32"]),
        ("10.0.0.0/28", ["10.0.0.0/28"]),
        ("10.0.0.10-10.0.0.20", ["10.0.0.10-10.0.0.20"]),
    ],
)
def test_pool_addresses(address: str, pool: list[str]) -> None:
    assert pool_addresses(address) == pool


@pytest.mark.parametrize("address", ["10.0.0", "10.0.0.9-10.0.0.1", "host.example"])
def test_bad_address(address: str) -> None:
    with pytest.raises(LayoutError, match="--address"):
        pool_addresses(address)
