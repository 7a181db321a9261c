"""Site values: found in the built objects and located to file:line; contradictions flagged by validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxops.layout.findings import Findings
from fluxops.layout.site_checks import check_site_values, inventory_hosts
from fluxops.layout.site_values import SiteValue, read_site_values, rewrite_line, split_line
from fluxops.layout.tree import Tree, load
from tests.layout_fixtures import REPO, copy_tree

HOSTS = {"lab": {"n5"}, "phx": {"phx1"}}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_tree(tmp_path / "repo")


def _values(tree: Tree, cluster: str) -> list[SiteValue]:
    return read_site_values(tree, tree.clusters[cluster])


def _findings(root: Path, cluster: str | None = None, hosts: dict[str, set[str]] | None = None) -> Findings:
    findings = Findings()
    check_site_values(load(root, cluster), findings, HOSTS if hosts is None else hosts)
    return findings


def _add_app(root: Path, name: str, manifest: str) -> str:
    """A new app folder in lab's apps phase holding ``manifest``; its file, repository-relative."""
    folder = root / "k8s/clusters/lab/apps" / name
    folder.mkdir()
    (folder / "app.yaml").write_text(manifest, encoding="utf-8")
    (folder / "kustomization.yaml").write_text("resources:\n  - app.yaml\n", encoding="utf-8")
    apps = root / "k8s/clusters/lab/apps/kustomization.yaml"
    apps.write_text(apps.read_text().replace("resources:\n", f"resources:\n  - {name}\n"), encoding="utf-8")
    return f"k8s/clusters/lab/apps/{name}/app.yaml"


def _line(root: Path, file: str, text: str) -> int:
    """The line of ``file`` that holds ``text`` (the oracle for the reported lines)."""
    lines = (root / file).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_the_shipped_clusters_site_values_each_at_the_line_that_sets_it() -> None:
    tree = load(REPO)
    found = {c: _values(tree, c) for c in ("lab", "phx")}
    summary = {c: sorted({(v.field, v.value, v.object) for v in vals}) for c, vals in found.items()}
    assert summary["phx"] == [
        ("address_pool", "85.31.234.30/32", "IPAddressPool metallb-system/public"),
        ("domains", "example.com", "HelmRelease flux-system/external-dns"),
        ("external_dns_owner", "phx", "HelmRelease flux-system/external-dns"),
        ("lb_ips", "85.31.234.30", "HelmRelease flux-system/traefik"),
    ]
    lab = summary["lab"]
    assert ("lb_ips", "192.168.8.200", "HelmRelease flux-system/traefik") in lab
    assert ("lb_ips", "192.168.8.201", "Service adguard/adguard-dns") in lab
    assert ("node_names", "n5", "HelmRelease flux-system/metallb") in lab
    assert ("node_names", "n5", "StorageClass openebs-zfs-db") in lab
    assert ("node_names", "n5", "Deployment homeassistant/homeassistant") in lab
    assert ("storage_pools", "tank/k8s", "StorageClass openebs-zfs") in lab
    assert ("external_dns_owner", "lab", "HelmRelease flux-system/external-dns") in lab
    assert ("domains", "lab.example.com", "HelmRelease flux-system/external-dns") in lab
    assert ("address_pool", "192.168.8.200-192.168.8.220", "IPAddressPool metallb-system/lan") in lab
    places = {(v.field, v.object): v.at for v in found["lab"]}
    # Chart values from a generated ConfigMap point into the values file it was generated from,
    # and a value a kustomize patch sets into the patch.
    assert places[("lb_ips", "HelmRelease flux-system/traefik")] == (
        "k8s/clusters/lab/infrastructure/traefik/values.yaml:21"
    )
    assert places[("node_names", "HelmRelease flux-system/metallb")] == (
        "k8s/clusters/lab/infrastructure/metallb/kustomization.yaml:18"
    )
    for value in (v for vals in found.values() for v in vals):
        assert value.line is not None, value
        line = (REPO / value.file).read_text(encoding="utf-8").splitlines()[value.line - 1]
        assert value.value in line, (value, line)


def test_the_shipped_tree_has_no_contradiction_and_its_inventory_is_read() -> None:
    hosts, name = inventory_hosts(REPO)
    assert hosts == HOSTS and name == "inventory/hosts.yaml"
    assert _findings(REPO).items == []
    assert _findings(REPO, "phx").items == []


@pytest.mark.parametrize(
    ("manifest", "code", "marker"),
    [
        pytest.param(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: default}\n"
            "spec:\n  type: LoadBalancer\n  loadBalancerIP: 10.9.9.9\n  ports: [{port: 80}]\n",
            "lb-ip-outside-pool",
            "loadBalancerIP: 10.9.9.9",
            id="loadBalancerIP",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: default\n  annotations:\n"
            "    kube-vip.io/loadbalancerIPs: 192.168.8.210,10.9.9.9\n"
            "spec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n",
            "lb-ip-outside-pool",
            "kube-vip.io/loadbalancerIPs",
            id="kube-vip-annotation",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\n"
            "spec:\n  nodeName: ghost\n  containers: [{name: c, image: busybox}]\n",
            "node-pin",
            "nodeName: ghost",
            id="nodeName",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec:\n  affinity:\n"
            "    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n"
            "        nodeSelectorTerms:\n          - matchExpressions:\n"
            "              - key: kubernetes.io/hostname\n                operator: In\n"
            "                values:\n                  - n5\n                  - ghost\n"
            "  containers: [{name: c, image: busybox}]\n",
            "node-pin",
            "- ghost",
            id="node-affinity",
        ),
    ],
)
def test_a_contradiction_is_an_error_at_its_line(repo: Path, manifest: str, code: str, marker: str) -> None:
    file = _add_app(repo, "probe", manifest)
    errors = _findings(repo).errors
    assert [(f.code, f.file, f.line) for f in errors] == [(code, file, _line(repo, file, marker))]
    assert ("10.9.9.9" if code.startswith("lb") else "ghost") in errors[0].message


def test_what_is_no_pin_is_not_flagged(repo: Path) -> None:
    _add_app(
        repo,
        "probe",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec:\n  affinity:\n"
        "    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n"
        "        nodeSelectorTerms:\n          - matchExpressions:\n"
        "              - {key: kubernetes.io/hostname, operator: NotIn, values: [ghost]}\n"
        "    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n"
        "        - topologyKey: kubernetes.io/hostname\n          labelSelector:\n"
        "            matchLabels: {app: p}\n"
        "  containers:\n    - name: c\n      image: busybox\n"
        "      env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]\n",
    )
    assert _findings(repo).items == []


def test_chart_values_spec_values_win_over_values_from(repo: Path) -> None:
    """A patch setting spec.values overrides the valuesFrom file, as helm-controller merges them."""
    kfile = repo / "k8s/clusters/lab/infrastructure/traefik/kustomization.yaml"
    kfile.write_text(
        kfile.read_text().replace(
            "      spec:\n        valuesFrom:",
            "      spec:\n        values:\n          service:\n            annotations:\n"
            "              metallb.universe.tf/loadBalancerIPs: 10.9.9.9\n        valuesFrom:",
        ),
        encoding="utf-8",
    )
    tree = load(repo, "lab")
    traefik = [v for v in _values(tree, "lab") if v.object == "HelmRelease flux-system/traefik"]
    rel = "k8s/clusters/lab/infrastructure/traefik/kustomization.yaml"
    assert [(v.value, v.at) for v in traefik] == [("10.9.9.9", f"{rel}:{_line(repo, rel, '10.9.9.9')}")]
    assert [f.code for f in _findings(repo, "lab").errors] == ["lb-ip-outside-pool"]


def test_one_owner_id_in_two_clusters(repo: Path) -> None:
    values = repo / "k8s/clusters/phx/infrastructure/external-dns/values.yaml"
    values.write_text(values.read_text().replace("txtOwnerId: phx", "txtOwnerId: lab"), encoding="utf-8")
    lab_at = "k8s/clusters/lab/infrastructure/external-dns/values.yaml:3"
    phx_at = "k8s/clusters/phx/infrastructure/external-dns/values.yaml:3"
    errors = _findings(repo).errors
    assert sorted((f.code, f.where) for f in errors) == [
        ("external-dns-owner", lab_at),
        ("external-dns-owner", phx_at),
    ]
    # Validating one cluster still compares with the others, and reports on that cluster only.
    only = _findings(repo, "phx").errors
    assert [f.where for f in only] == [phx_at] and lab_at in only[0].message


def test_pins_need_an_inventory(repo: Path) -> None:
    """No inventory: pins unchecked and nothing said; a cluster missing from it: a warning."""
    _add_app(repo, "probe", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeName: ghost\n")
    findings = Findings()
    check_site_values(load(repo, "lab"), findings)  # the copy has no invoke.yaml
    assert findings.items == []
    (repo / "invoke.yaml").write_text("fluxops:\n  inventory: inventory/none.yaml\n", encoding="utf-8")
    check_site_values(load(repo, "lab"), findings)
    assert findings.items == []
    (repo / "inventory").mkdir()
    (repo / "inventory/none.yaml").write_text("all:\n  children:\n    phx:\n      hosts:\n        phx1:\n")
    check_site_values(load(repo, "lab"), findings)
    assert [(f.severity, f.code) for f in findings.items] == [("warning", "node-pin")]
    assert "no group in inventory/none.yaml" in findings.items[0].message
    (repo / "inventory/none.yaml").write_text("all:\n  children:\n    lab:\n      hosts:\n        n5:\n")
    check_site_values(load(repo, "lab"), findings)
    assert [f.code for f in findings.errors] == ["node-pin"] and "ghost" in findings.errors[0].message


def test_an_inventory_that_does_not_load_is_a_warning(repo: Path) -> None:
    (repo / "invoke.yaml").write_text("fluxops:\n  inventory: broken.yaml\n", encoding="utf-8")
    (repo / "broken.yaml").write_text("all:\n  hosts: [\n", encoding="utf-8")
    findings = Findings()
    check_site_values(load(repo, "phx"), findings)
    assert [(f.severity, f.code) for f in findings.items] == [("warning", "node-pin")]


@pytest.mark.parametrize(
    ("line", "mapping", "expected"),
    [
        (
            "    metallb.universe.tf/loadBalancerIPs: 192.168.8.200",
            {"192.168.8.200": "10.0.0.1"},
            "    metallb.universe.tf/loadBalancerIPs: 10.0.0.1",
        ),
        # a swap in one comma list, in one pass
        (
            "  ips: 10.0.0.1,10.0.0.2  # two",
            {"10.0.0.1": "10.0.0.2", "10.0.0.2": "10.0.0.1"},
            "  ips: 10.0.0.2,10.0.0.1  # two",
        ),
        ("          - n5", {"n5": "edge1"}, "          - edge1"),
        (
            "              kubernetes.io/hostname: n5",
            {"n5": "123"},
            '              kubernetes.io/hostname: "123"',
        ),
        ('txtOwnerId: "lab"', {"lab": "edge"}, 'txtOwnerId: "edge"'),
        ("  - --txt-owner-id=lab", {"lab": "edge"}, "  - --txt-owner-id=edge"),
        ("  - 192.168.8.200", {"192.168.8.20": "10.0.0.1"}, None),
        ("value: fluxops-lab", {"lab": "edge"}, None),
        ("lab: x  # lab", {"lab": "edge"}, None),
    ],
)
def test_rewrite_line(line: str, mapping: dict[str, str], expected: str | None) -> None:
    assert rewrite_line(line, mapping) == expected


def test_split_line() -> None:
    assert split_line("  - key: value # note") == ("  - ", "key: ", "value", " # note")
    assert split_line("- fd00::1") == ("- ", "", "fd00::1", "")
    assert split_line("# only a comment") == ("", "", "", "# only a comment")
