"""Findings that read well: each object's own line, each problem once per cluster, short lists."""

from __future__ import annotations

from pathlib import Path

from fluxops.layout import report
from fluxops.layout.findings import Finding, Findings, Severity, listing
from fluxops.layout.kustomize import Builder
from fluxops.layout.sources import line_of, read_sources
from fluxops.layout.validate import validate
from tests.layout_fixtures import THIS_REPO, pristine_root

RELEASE = """apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: app
spec:
  interval: {interval}
  chart:
    spec:
      chart: {chart}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def two_apps(root: Path, second_chart: str) -> list[Path]:
    """Two folders, each putting a HelmRelease ``app`` (no namespace in its file) in its namespace."""
    folders = []
    for name, chart, interval in (("one", "podinfo", "1h"), ("two", second_chart, "1h")):
        folder = root / "apps" / name
        write(folder / "kustomization.yaml", f"namespace: {name}\nresources:\n  - release.yaml\n")
        # a leading comment puts the second object at another line than the first
        lead = "# the second app\n" * (name == "two")
        write(folder / "release.yaml", lead + RELEASE.format(interval=interval, chart=chart))
        folders.append(folder)
    return folders


def test_two_objects_of_one_name_find_their_own_documents(tmp_path: Path) -> None:
    folders = two_apps(tmp_path, "nginx")
    sources = read_sources(tmp_path, [tmp_path / "apps"])
    builds = Builder(None).build_all(folders)
    found = []
    for folder in folders:
        (obj,) = builds[folder.resolve()].objects
        doc = sources.find("HelmRelease", "app", obj["metadata"]["namespace"], like=obj)
        assert doc is not None
        found.append((doc.file, line_of(doc.data, "spec", "chart", "spec", "chart")))
    assert found == [("apps/one/release.yaml", 9), ("apps/two/release.yaml", 10)]


def test_identical_objects_are_told_apart_by_occurrence(tmp_path: Path) -> None:
    two_apps(tmp_path, "podinfo")
    sources = read_sources(tmp_path, [tmp_path / "apps"])
    docs = [sources.find("HelmRelease", "app", "", occurrence=n) for n in range(3)]
    assert [(d.file, d.line) for d in docs if d] == [
        ("apps/one/release.yaml", 1),
        ("apps/two/release.yaml", 2),
        ("apps/two/release.yaml", 2),
    ]


def test_folders_and_namespace_come_before_likeness(tmp_path: Path) -> None:
    two_apps(tmp_path, "nginx")
    write(tmp_path / "apps/three/release.yaml", RELEASE.format(interval="1h", chart="nginx"))
    sources = read_sources(tmp_path, [tmp_path / "apps"])
    like = {"spec": {"chart": {"spec": {"chart": "nginx"}}}}
    doc = sources.find("HelmRelease", "app", under=("apps/one",), like=like)
    assert doc is not None and doc.file == "apps/one/release.yaml"
    alike = [sources.find("HelmRelease", "app", like=like, occurrence=n) for n in (0, 1)]
    assert [d.file for d in alike if d] == ["apps/three/release.yaml", "apps/two/release.yaml"]


def test_items_of_a_list_file_are_found_at_their_lines(tmp_path: Path) -> None:
    write(
        tmp_path / "k/list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n"
        "      name: first\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: second\n",
    )
    sources = read_sources(tmp_path, [tmp_path / "k"])
    second = sources.find("ConfigMap", "second")
    assert second is not None and (second.file, second.line) == ("k/list.yaml", 8)


def finding(cluster: str, phase: str = "apps", message: str = "HelmRelease app: bad chart") -> Finding:
    return Finding(Severity.ERROR, "schema", message, "k8s/base/app.yaml", 3, cluster, phase)


def test_a_problem_is_kept_once_per_cluster() -> None:
    findings = Findings()
    for f in (finding("lab"), finding("lab", phase="infrastructure"), finding("phx"), finding("lab")):
        findings.add(f)
    assert [(f.cluster, f.phase) for f in findings.items] == [("lab", "apps"), ("phx", "apps")]
    groups = report.grouped(findings)
    assert {c: sum(len(v) for v in p.values()) for c, p in groups.items()} == {"lab": 1, "phx": 1}


def test_other_messages_at_one_place_stay_apart() -> None:
    findings = Findings()
    findings.add(finding("lab"))
    findings.add(finding("lab", message="HelmRelease app: other"))
    assert len(findings.items) == 2


def test_long_lists_are_cut() -> None:
    names = [f"app{i}" for i in range(80)]
    assert listing(names) == "app0, app1, app2, app3, app4, app5, app6, app7, app8, app9 ... and 70 more"
    assert listing(names[:11]) == ", ".join(names[:11])
    assert listing(names[:12], limit=3, sep=" -> ") == "app0 -> app1 -> app2 ... and 9 more"
    assert listing([]) == ""


def test_a_finding_of_no_cluster_is_shown_under_the_cluster_holding_its_file() -> None:
    findings = Findings()
    findings.add(Finding(Severity.WARNING, "unused", "not built", "clusters/prod/extra/kustomization.yaml"))
    findings.add(Finding(Severity.WARNING, "unused", "not built", "infrastructure/old/kustomization.yaml"))
    groups = report.grouped(findings, {"clusters/prod/": "prod"})
    assert {c: [f.file for fs in p.values() for f in fs] for c, p in groups.items()} == {
        "prod": ["clusters/prod/extra/kustomization.yaml"],
        report.TREE_GROUP: ["infrastructure/old/kustomization.yaml"],
    }


def test_the_text_report_groups_by_the_tree_s_cluster_folders() -> None:
    tree, findings = validate(pristine_root(), layout=THIS_REPO)
    assert report.cluster_folders(tree) == {"k8s/clusters/lab/": "lab", "k8s/clusters/phx/": "phx"}
    findings.add(Finding(Severity.WARNING, "probe", "a probe", "k8s/clusters/phx/apps.yaml", 1))
    text = report.text(tree, findings)
    assert text.index("cluster phx") < text.index("k8s/clusters/phx/apps.yaml:1: a probe")
