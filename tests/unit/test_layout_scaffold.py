"""layout.new-cluster: the scaffold validates at once, and edited files keep comments and key order."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml.comments import CommentedMap

from fluxops.errors import LayoutError
from fluxops.layout.roundtrip import dump_like, load_docs
from fluxops.layout.scaffold import new_cluster, pool_addresses
from fluxops.layout.site_answers import Question
from fluxops.layout.site_values import read_site_values
from fluxops.layout.validate import validate
from tests.layout_fixtures import REPO, copy_tree


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


EDGE_VALUES = {
    "lb_ips": ["192.168.8.200=10.0.50.240", "192.168.8.201=10.0.50.241"],  # Traefik, AdGuard's DNS
    "node_names": ["edge1"],
    "external_dns_owner": ["edge"],
    "domains": ["edge.example.com"],
    "storage_pools": ["tank/k8s"],
}
EDGE_POOL = "10.0.50.240-10.0.50.250"
INVENTORY = """\
all:
  children:
    lab:
      hosts:
        n5:
    phx:
      hosts:
        phx1:
    edge:
      hosts:
        edge1:
"""


def _with_inventory(repo: Path) -> Path:
    """The copy gets an invoke.yaml naming an inventory with an edge group (host edge1)."""
    (repo / "inventory").mkdir(exist_ok=True)
    (repo / "inventory/hosts.yaml").write_text(INVENTORY, encoding="utf-8")
    (repo / "invoke.yaml").write_text("fluxops:\n  inventory: inventory/hosts.yaml\n", encoding="utf-8")
    return repo


def _messages(findings: list) -> list[str]:
    return [f"{f.where} [{f.code}] {f.message}" for f in findings]


def test_new_cluster_validates_at_once(repo: Path) -> None:
    result = new_cluster(
        repo,
        "edge",
        like="lab",
        address="10.20.0.5-10.20.0.6",
        values={**EDGE_VALUES, "lb_ips": ["192.168.8.200=10.20.0.5", "192.168.8.201=10.20.0.6"]},
    )
    tree, findings = validate(repo, "edge")
    assert findings.errors == [], _messages(findings.errors)
    edge = tree.clusters["edge"]
    assert [p.name for p in edge.phases if p.name in ("crds", "apps")]
    for phase in edge.phases:
        if phase.name != "crds":
            assert phase.path.startswith("./k8s/clusters/edge/"), phase.path
    apps = edge.phase("apps")
    assert apps is not None and apps.objects == []
    pools = [o for p in edge.phases for o in p.objects if o.get("kind") == "IPAddressPool"]
    assert pools and pools[0]["spec"]["addresses"] == ["10.20.0.5-10.20.0.6"]
    assert not list((repo / "k8s/clusters/edge").rglob("*.sops.yaml"))
    assert result.omitted_secrets and all(
        "invoke secrets.new --cluster edge" in s["command"] for s in result.omitted_secrets
    )
    # The other clusters still validate, untouched.
    assert validate(repo)[1].errors == []


def test_the_issue_edge_example_is_flagged_until_its_values_are_given(repo: Path) -> None:
    """new-cluster edge --like lab --address ...: lab's LB IP, pins to n5 and owner id are flagged."""
    _with_inventory(repo)
    result = new_cluster(repo, "edge", like="lab", address=EDGE_POOL)
    assert {v.field for v in result.kept} == {*EDGE_VALUES}
    errors = validate(repo, "edge")[1].errors
    edge = "k8s/clusters/edge"
    assert sorted((f.code, f.where) for f in errors) == [
        ("external-dns-owner", f"{edge}/infrastructure/external-dns/values.yaml:3"),
        ("lb-ip-outside-pool", f"{edge}/infrastructure/adguard/service.yaml:24"),
        ("lb-ip-outside-pool", f"{edge}/infrastructure/traefik/values.yaml:21"),
        ("node-pin", f"{edge}/infrastructure/metallb/kustomization.yaml:18"),
        ("node-pin", f"{edge}/storage/storage-classes.yaml:25"),
        ("node-pin", f"{edge}/storage/storage-classes.yaml:45"),
    ], _messages(errors)
    by_code = {f.code: f.message for f in sorted(errors, key=lambda f: f.where)}
    assert "192.168.8.200" in by_code["lb-ip-outside-pool"] and EDGE_POOL in by_code["lb-ip-outside-pool"]
    assert "n5" in by_code["node-pin"] and "edge1" in by_code["node-pin"]
    assert "k8s/clusters/lab/infrastructure/external-dns/values.yaml:3" in by_code["external-dns-owner"]

    shutil.rmtree(repo / edge)
    result = new_cluster(repo, "edge", like="lab", address=EDGE_POOL, values=EDGE_VALUES)
    assert result.kept == []
    tree, findings = validate(repo, "edge")
    assert findings.errors == [], _messages(findings.errors)
    assert not [f for f in findings.warnings if f.cluster == "edge"], _messages(findings.warnings)
    found = {(v.field, v.value) for v in read_site_values(tree, tree.clusters["edge"])}
    assert found == {
        ("address_pool", EDGE_POOL),
        *((f, v[0].split("=")[-1]) for f, v in EDGE_VALUES.items()),
        ("lb_ips", "10.0.50.241"),
    }
    # Only the site values changed: every other line of those files is lab's, line for line.
    expected: dict[str, set[int]] = {}
    for change in result.changes:
        place, _, edit = change.partition(": ")
        file, _, line = place.partition(":")
        old, _, new = edit.partition(" -> ")
        if line and old != new:
            expected.setdefault(file, set()).add(int(line))
    assert len(expected) == 5
    for file, lines in expected.items():
        before = (repo / file.replace("/edge/", "/lab/")).read_text(encoding="utf-8").splitlines()
        after = (repo / file).read_text(encoding="utf-8").splitlines()
        assert {i for i, (a, b) in enumerate(zip(before, after, strict=True), 1) if a != b} == lines, file


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


def _clusters(repo: Path) -> list[str]:
    """Every entry of k8s/clusters, hidden ones included (a half-written folder would show)."""
    return sorted(p.name for p in (repo / "k8s/clusters").iterdir())


def test_check_writes_nothing_and_shows_what_would_be(repo: Path) -> None:
    before = _clusters(repo)
    result = new_cluster(repo, "edge", like="lab", address=EDGE_POOL, values=EDGE_VALUES, check=True)
    assert _clusters(repo) == before and result.checked
    assert "k8s/clusters/edge/infrastructure/traefik/values.yaml" in result.written
    assert "k8s/clusters/edge/infrastructure/traefik/values.yaml:21: 192.168.8.200 -> 10.0.50.240" in (
        result.changes
    )


def test_require_all_lists_every_missing_option_and_writes_nothing(repo: Path) -> None:
    before = _clusters(repo)
    with pytest.raises(LayoutError) as caught:
        new_cluster(repo, "edge", like="lab", values={"lb_ips": EDGE_VALUES["lb_ips"]}, require_all=True)
    message = str(caught.value)
    for option in ("--address", "--node", "--owner-id", "--domain", "--storage-pool"):
        assert f"  {option} for lab's" in message
    assert "--lb-ip" not in message
    assert "n5 (k8s/clusters/lab/" in message
    assert "k8s/clusters/lab/infrastructure/metallb/kustomization.yaml:18" in message
    assert _clusters(repo) == before


def test_missing_values_are_asked_with_the_template_value_shown(repo: Path) -> None:
    asked: list[Question] = []
    lb_ips = ["not-an-ip", "10.0.50.241", "10.0.50.242"]  # AdGuard's DNS (a bad answer first), Traefik
    answers = iter([*lb_ips, "edge1", "edge", "edge.example.com", "ssd/k8s"])

    def ask(question: Question) -> str:
        asked.append(question)
        return next(answers)

    new_cluster(repo, "edge", like="lab", address=EDGE_POOL, ask=ask)
    assert [(q.option, q.old) for q in asked] == [
        ("--lb-ip", "192.168.8.201"),
        ("--lb-ip", "192.168.8.201"),
        ("--lb-ip", "192.168.8.200"),
        ("--node", "n5"),
        ("--owner-id", "lab"),
        ("--domain", "lab.example.com"),
        ("--storage-pool", "tank/k8s"),
    ]
    assert "not-an-ip" in asked[1].problem and not asked[0].problem
    assert "k8s/clusters/lab/infrastructure/metallb/kustomization.yaml:18" in asked[3].places
    text = (repo / "k8s/clusters/edge/storage/storage-classes.yaml").read_text(encoding="utf-8")
    assert "poolname: ssd/k8s" in text and "tank/k8s" in text  # the comment keeps lab's words


def test_no_answer_writes_nothing(repo: Path) -> None:
    def ask(question: Question) -> str:
        raise EOFError

    before = _clusters(repo)
    with pytest.raises(LayoutError, match="no answer for --lb-ip; nothing written"):
        new_cluster(repo, "edge", like="lab", address=EDGE_POOL, ask=ask)
    assert _clusters(repo) == before


@pytest.mark.parametrize(
    ("values", "address", "message"),
    [
        (
            {"lb_ips": ["192.168.8.200=10.0.60.1", "192.168.8.201=10.0.50.241"]},
            EDGE_POOL,
            "--lb-ip 10.0.60.1 is outside the new pool",
        ),
        ({"lb_ips": ["300.1.1.1"]}, None, "--lb-ip '300.1.1.1' is not a valid LoadBalancer IP"),
        ({"node_names": ["n9=edge1"]}, None, "--node n9=edge1: lab has no node name"),
        ({"node_names": ["Edge_1"]}, None, "--node 'Edge_1' is not a valid node name"),
        ({"lb_ips": ["10.0.50.240", "10.0.50.241"]}, None, "give each as --lb-ip OLD=NEW"),
    ],
)
def test_bad_option_values(
    repo: Path, values: dict[str, list[str]], address: str | None, message: str
) -> None:
    before = _clusters(repo)
    with pytest.raises(LayoutError, match=re.escape(message)):
        new_cluster(repo, "edge", like="lab", address=address, values=values)
    assert _clusters(repo) == before


def test_old_equals_new_picks_the_value(repo: Path) -> None:
    result = new_cluster(repo, "edge", like="lab", values={"node_names": ["n5=edge1"]})
    assert "k8s/clusters/edge/infrastructure/metallb/kustomization.yaml:18: n5 -> edge1" in result.changes
    assert not [v for v in result.kept if v.field == "node_names"]


def test_an_error_while_writing_leaves_nothing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fluxops.layout import scaffold

    calls = []
    real = scaffold.atomic_write

    def failing(path: Path, data: str | bytes, **kwargs: int) -> None:
        calls.append(path)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        real(path, data, **kwargs)

    monkeypatch.setattr(scaffold, "atomic_write", failing)
    before = _clusters(repo)
    with pytest.raises(OSError, match="No space left"):
        new_cluster(repo, "edge", like="lab", address=EDGE_POOL, values=EDGE_VALUES)
    assert len(calls) == 5 and _clusters(repo) == before


def _invoke(
    repo: Path, *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """``invoke layout.new-cluster ARGS`` in the copy (its own tasks.py and invoke.yaml)."""
    shutil.copy2(REPO / "tasks.py", repo / "tasks.py")
    return subprocess.run(
        [sys.executable, "-m", "invoke", "layout.new-cluster", *args],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


EDGE_OPTIONS = (
    "--like", "lab", "--address", EDGE_POOL, "--lb-ip", "192.168.8.200=10.0.50.240",
    "--lb-ip", "192.168.8.201=10.0.50.241", "--node", "edge1",
    "--owner-id", "edge", "--domain", "edge.example.com", "--storage-pool", "tank/k8s",
)  # fmt: skip


def test_cli_without_a_terminal_needs_every_value(repo: Path) -> None:
    _with_inventory(repo)
    before = _clusters(repo)
    nameless = _invoke(repo, *EDGE_OPTIONS)
    assert nameless.returncode != 0 and "--name is required" in nameless.stderr
    partial = _invoke(repo, "--name", "edge", "--like", "lab", "--address", EDGE_POOL)
    assert partial.returncode == 1, partial.stdout
    assert "k8s/clusters/edge not written" in partial.stderr and "  --lb-ip for lab's" in partial.stderr
    assert _clusters(repo) == before
    check = _invoke(repo, "--name", "edge", *EDGE_OPTIONS, "--check")
    assert check.returncode == 0, check.stderr
    assert "would write k8s/clusters/edge/storage.yaml" in check.stdout and _clusters(repo) == before
    done = _invoke(repo, "--name", "edge", *EDGE_OPTIONS)
    assert done.returncode == 0, done.stderr
    assert "set k8s/clusters/edge/infrastructure/traefik/values.yaml:21: 192.168.8.200 -> 10.0.50.240" in (
        done.stdout
    )
    findings = validate(repo, "edge")[1]
    assert findings.errors == [], _messages(findings.errors)


def test_cli_on_a_terminal_asks_and_refuses_an_empty_answer(repo: Path) -> None:
    master, slave = pty.openpty()
    answers = b"\nedge1\nedge\nedge.example.com\ntank/k8s\n"
    os.write(master, answers)  # the terminal buffers the lines until the task reads them
    try:
        result = _invoke(repo, "--name", "edge", "--like", "lab", "--address", EDGE_POOL, "--lb-ip",
                         "192.168.8.200=10.0.50.240", "--lb-ip", "192.168.8.201=10.0.50.241",
                         stdin=slave)  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 0, result.stderr
    assert "lab's node name (pin) n5 (k8s/clusters/lab/" in result.stdout
    assert "k8s/clusters/lab/infrastructure/metallb/kustomization.yaml:18" in result.stdout
    assert "a value is needed (type n5 to keep lab's)" in result.stdout
    text = (repo / "k8s/clusters/edge/infrastructure/external-dns/values.yaml").read_text(encoding="utf-8")
    assert "txtOwnerId: edge" in text and "  - edge.example.com" in text
