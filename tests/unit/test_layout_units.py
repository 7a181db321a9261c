"""The layout library's pure parts: line numbers, cycles, JSON patches, sops detection, CRD ordering.

Schemas are tested in test_layout_schemas*.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from fluxops.layout import audit, graph, secrets_check
from fluxops.layout.findings import Findings
from fluxops.layout.kustomize import Builder
from fluxops.layout.model import Cluster, Phase
from fluxops.layout.sources import YamlSyntaxError, line_of, load_all

FLUX_KS = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "kind": "Kustomization",
    "metadata": {"name": "apps", "namespace": "flux-system"},
    "spec": {
        "interval": "1h",
        "path": "./x",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "s"},
    },
}


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "spec": {"group": "metallb.io", "names": {"kind": "IPAddressPool"}},
}
POOL = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "p"}}


def phase(name: str, deps: list[str], objects: list[dict] | None = None) -> Phase:
    obj = {"metadata": {"name": name}, "spec": {"dependsOn": [{"name": d} for d in deps], "wait": True}}
    return Phase(name, "flux-system", obj, objects=objects or [])


def test_line_numbers() -> None:
    doc = load_all("a: 1\nb:\n  - x: 1\n  - y:\n      z: 2\n---\nkind: K\n")
    assert line_of(doc[0], "b", 1, "y", "z") == 5
    assert line_of(doc[0], "b", 7) == 2
    assert doc[1].line == 7
    with pytest.raises(YamlSyntaxError) as exc:
        load_all("a: 1\nb: [1\nc: 2\n")
    assert exc.value.line == 3


def test_cycles() -> None:
    cluster = Cluster(
        "c", Path("."), [phase("a", ["b"]), phase("b", ["c"]), phase("c", ["a"]), phase("d", ["a"])]
    )
    assert graph.find_cycles(cluster) == [["a", "b", "c"]]
    assert graph.find_cycles(Cluster("c", Path("."), [phase("a", []), phase("b", ["a"])])) == []


def test_crd_ordering() -> None:
    crd, pool = CRD, POOL
    unknown = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}}
    release = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {"name": "r"}}
    ok = Cluster(
        "c", Path("."), [phase("crds", [], [crd]), phase("config", ["mid"], [pool]), phase("mid", ["crds"])]
    )
    assert graph.crd_ordering(ok) == []
    same = Cluster("c", Path("."), [phase("crds", [], [crd, pool])])
    assert graph.crd_ordering(same) == []
    racing = Cluster("c", Path("."), [phase("crds", [], [crd]), phase("config", [], [pool])])
    [issue] = graph.crd_ordering(racing)
    assert (issue.phase.name, issue.case, issue.installers, issue.kind) == (
        "config",
        "unordered",
        ("crds",),
        "IPAddressPool.metallb.io",
    )
    assert graph.crd_ordering(racing, root_objects=[crd]) == []  # the cluster folder installs it first
    nowhere = Cluster("c", Path("."), [phase("apps", [], [unknown])])
    assert graph.crd_ordering(nowhere)[0].case == "nowhere"
    charted = Cluster("c", Path("."), [phase("infra", [], [release]), phase("apps", ["infra"], [unknown])])
    assert [(i.case, i.installers) for i in graph.crd_ordering(charted)] == [("charted", ("infra",))]


def test_depends_on_is_namespaced() -> None:
    crd, pool = CRD, POOL
    crds = Phase("crds", "infra", {"metadata": {"name": "crds", "namespace": "infra"}}, objects=[crd])
    same_ns = {"spec": {"dependsOn": [{"name": "crds"}]}}
    other_ns = {"spec": {"dependsOn": [{"name": "crds", "namespace": "infra"}]}}
    wrong = Cluster("c", Path("."), [crds, Phase("config", "apps", same_ns, objects=[pool])])
    assert wrong.phases[1].depends_refs == [("apps", "crds")]
    assert [i.case for i in graph.crd_ordering(wrong)] == ["unordered"]
    findings = Findings()
    graph.check_graph(wrong, findings)
    assert [f.code for f in findings.errors] == ["depends-on-missing"]
    right = Cluster("c", Path("."), [crds, Phase("config", "apps", other_ns, objects=[pool])])
    assert right.ancestors(right.phases[1]) == {("infra", "crds")}
    assert graph.crd_ordering(right) == []
    findings = Findings()
    graph.check_graph(right, findings)
    assert findings.items == []


def test_sops_detection() -> None:
    good = {
        "kind": "Secret",
        "stringData": {"token": "ENC[AES256_GCM,data:abc,type:str]"},
        "sops": {"mac": "ENC[AES256_GCM,data:m,type:str]", "age": [{"recipient": "age1x", "enc": "..."}]},
    }
    plain = {"kind": "Secret", "stringData": {"token": "x"}}
    assert secrets_check.plaintext_secret(plain) and not secrets_check.plaintext_secret(good)
    assert secrets_check.is_encrypted(good) and not secrets_check.is_encrypted(plain)
    # sops leaves empty strings, nulls, empty maps and lists in clear: no value, no plaintext Secret
    empty = {"kind": "Secret", "stringData": {"a": "", "b": None}, "data": {"c": {}, "d": []}}
    assert not secrets_check.plaintext_secret(empty)
    assert secrets_check.plaintext_secret({"kind": "Secret", "data": {"n": 0}})
    assert not secrets_check.is_sops_file(".sops.yaml") and secrets_check.is_sops_file("k8s/a/x.sops.yaml")
    assert secrets_check.is_sops_file("k8s/a/x.sops.yml") and not secrets_check.is_sops_file(".sops.yml")


@pytest.mark.parametrize(
    ("base", "target"),
    [
        ({"a": 1, "b": {"c": [1, 2]}}, {"a": 2, "b": {"c": [1, 3], "d": "x/y~z"}}),
        ({"l": [{"n": 1}, {"n": 2}]}, {"l": [{"n": 1}]}),
        ({"a": {"b": 1}}, {}),
    ],
)
def test_json_patch_turns_base_into_target(base: dict, target: dict) -> None:
    result = copy.deepcopy(base)
    for op in audit.json_patch(base, target):
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = result
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        if op["op"] == "remove":
            del node[key]
        else:
            node[key] = op["value"]
    assert result == target


def test_common_and_similarity() -> None:
    a = {"kind": "K", "spec": {"x": 1, "y": [{"n": "a", "v": 1}]}}
    b = {"kind": "K", "spec": {"x": 2, "y": [{"n": "a", "v": 1}]}}
    assert audit.common([a, b]) == {"kind": "K", "spec": {"y": [{"n": "a", "v": 1}]}}
    assert audit.similarity(a, b) == pytest.approx(3 / 4)


def test_cache_key_follows_every_input(tmp_path: Path) -> None:
    base, overlay = tmp_path / "base", tmp_path / "overlay"
    base.mkdir()
    overlay.mkdir()
    (base / "kustomization.yaml").write_text("resources:\n  - cm.yaml\n")
    (base / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")
    (overlay / "kustomization.yaml").write_text("resources:\n  - ../base\n")
    first = Builder(None).key(overlay)
    assert Builder(None).key(overlay) == first
    (base / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n")
    assert Builder(None).key(overlay) != first


def test_build_and_cache(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text("namespace: demo\nresources:\n  - cm.yaml\n")
    (folder / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")
    cache = tmp_path / "cache"
    first = Builder(cache).build(folder)
    assert (
        first.ok and not first.cached and first.objects[0]["metadata"] == {"name": "a", "namespace": "demo"}
    )
    again = Builder(cache).build(folder)
    assert again.cached and again.objects == first.objects
    (folder / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    broken = Builder(cache).build(folder)
    assert not broken.ok and "missing.yaml" in broken.error
