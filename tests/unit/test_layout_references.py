"""The forward-reference check (issue #15): a phase using a Service, Secret or ConfigMap that only a
phase it does not depend on creates. The trees are in tests/reference_fixtures/ (README.md there) and
are built by the real kustomize; planted references are edits of a copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxops.layout.findings import Finding, Severity
from fluxops.layout.model import Phase
from fluxops.layout.references import (
    CODE,
    Creation,
    Reference,
    creations,
    forward_references,
    references,
    release_of,
    waits_for,
)
from fluxops.layout.tree import load
from fluxops.layout.validate import validate
from fluxops.settings import LayoutSettings

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "reference_fixtures"
FLUX_ONLY = LayoutSettings()
WEBHOOK_VALUES = "clusters/lab/infrastructure/external-dns/values.yaml"
ADGUARD_URL = "http://adguard.adguard.svc.cluster.local:3000"


def fixture(name: str, tmp_path: Path) -> Path:
    """A copy of one fixture tree to validate (and edit)."""
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def forward(root: Path) -> list[Finding]:
    """The forward-reference findings of validating ``root`` with Flux's rules alone."""
    return [f for f in validate(root, layout=FLUX_ONLY)[1].items if f.code == CODE]


def line_holding(root: Path, rel: str, needle: str) -> int:
    """The 1-based line of ``rel`` that holds ``needle`` (once)."""
    lines = [n for n, line in enumerate((root / rel).read_text().splitlines(), 1) if needle in line]
    assert len(lines) == 1, f"{needle!r} in {rel}: lines {lines}"
    return lines[0]


# --- the old lab tree --------------------------------------------------------------------------------


def test_old_lab_fails_at_infrastructure_naming_both_files(tmp_path: Path) -> None:
    root = fixture("old-lab", tmp_path)
    findings = validate(root, layout=FLUX_ONLY)[1]
    assert [f.code for f in findings.errors] == [CODE], findings.items
    error = findings.errors[0]
    assert (error.cluster, error.phase, error.file) == ("lab", "infrastructure", WEBHOOK_VALUES)
    assert error.line == line_holding(root, WEBHOOK_VALUES, ADGUARD_URL)
    assert error.message.startswith(
        f"HelmRelease flux-system/external-dns (infrastructure, waits) refers to Service adguard/adguard "
        f"({ADGUARD_URL}), which only phase apps creates (clusters/lab/apps/adguard/service.yaml:1): "
        "Flux applies apps only after infrastructure is Ready, so infrastructure is never Ready"
    )


def test_old_lab_forward_references_for_the_simulator(tmp_path: Path) -> None:
    tree = load(fixture("old-lab", tmp_path), layout=FLUX_ONLY)
    [fwd] = forward_references(tree.clusters["lab"])
    assert (fwd.phase.name, fwd.blocking, fwd.later, fwd.creator_phases) == (
        "infrastructure",
        True,
        True,
        ["apps"],
    )
    assert fwd.ref == Reference(
        "Service",
        "adguard",
        "adguard",
        ADGUARD_URL,
        ("provider", "webhook", "env", 0, "value"),
        entry=("flux-system", fwd.ref.entry[1], "values.yaml") if fwd.ref.entry else None,
        line=12,
    )
    assert fwd.ref.entry is not None and fwd.ref.entry[1].startswith("external-dns-values-")  # hashed name
    assert fwd.reason == (
        f"HelmRelease flux-system/external-dns refers to Service adguard/adguard ({ADGUARD_URL}), "
        "which only phase apps creates"
    )


def test_old_lab_fixed_by_external_dns_after_adguard(tmp_path: Path) -> None:
    """The issue's fix: the webhook's release in its own Kustomization that depends on apps."""
    root = fixture("old-lab", tmp_path)
    lab = root / "clusters" / "lab"
    shutil.move(lab / "infrastructure" / "external-dns", lab / "external-dns")
    (lab / "infrastructure" / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n"
    )
    ks = yaml.safe_load((lab / "infrastructure.yaml").read_text())
    ks["metadata"]["name"], ks["spec"]["path"] = "external-dns", "./clusters/lab/external-dns"
    ks["spec"]["dependsOn"] = [{"name": "apps"}]
    (lab / "external-dns.yaml").write_text(yaml.safe_dump(ks))
    kustomization = lab / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "  - external-dns.yaml\n")
    tree, findings = validate(root, layout=FLUX_ONLY)
    assert {p.name for p in tree.clusters["lab"].phases} == {"infrastructure", "apps", "external-dns"}
    assert findings.items == []


# --- planted forward references ------------------------------------------------------------------------


def test_clean_tree_has_none(tmp_path: Path) -> None:
    """Same-phase and earlier-phase Services, kubernetes.default.svc, kube-dns, a Service no phase
    creates, image registries with ports, external URLs: no finding at all.
    """
    tree, findings = validate(fixture("phases", tmp_path), layout=FLUX_ONLY)
    assert len(tree.clusters["site"].phases) == 5
    assert findings.items == []


def workload(name: str, namespace: str, container: str = "", pod: str = "") -> str:
    """A Deployment whose container and pod spec end with the given YAML (indented to fit)."""
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
        f"spec:\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n"
        f"      labels:\n        app: {name}\n    spec:\n{pod}      containers:\n        - name: {name}\n"
        f"          image: registry.infra:5000/{name}:v1\n{container}"
    )


def env(value: str) -> str:
    return f'          env:\n            - name: TARGET\n              value: "{value}"\n'


SECRET_KEY = (
    "          env:\n            - name: TOKEN\n              valueFrom:\n                secretKeyRef:\n"
)
HELM_RELEASE = """apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: cache
  namespace: shop
spec:
  interval: 30m
  chart:
    spec:
      chart: redis
      version: 20.1.0
      sourceRef:
        kind: HelmRepository
        name: charts
        namespace: flux-system
  valuesFrom:
    - kind: ConfigMap
      name: web-settings
"""
ROUTES = """apiVersion: v1
kind: ConfigMap
metadata:
  name: gateway-routes
  namespace: infra
data:
  routes.yaml: |
    routes:
      - upstream: http://web.shop.svc.cluster.local:8080
"""

# id, phase the file goes to, its text, the text the finding points at, severity, what it refers to,
# and a phrase of the message.
PLANTED: list[tuple[str, str, str, str, Severity, str, str]] = [
    (
        "svc URL to a later phase",
        "infrastructure",
        workload("probe", "infra", env("http://web.shop.svc.cluster.local:8080/health")),
        "web.shop.svc",
        Severity.ERROR,
        "Service shop/web",
        "Flux applies apps only after infrastructure is Ready",
    ),
    (
        "short host in a URL",
        "infrastructure",
        workload("probe", "infra", env("http://web.shop:8080/health")),
        "web.shop:8080",
        Severity.ERROR,
        "Service shop/web",
        "(http://web.shop:8080/health)",
    ),
    (
        "short host as the whole value",
        "infrastructure",
        workload("probe", "infra", env("web.shop:8080")),
        "web.shop:8080",
        Severity.ERROR,
        "Service shop/web",
        "(web.shop:8080)",
    ),
    (
        "Service name in the same namespace",
        "infrastructure",
        workload("probe", "shop", env("http://web:8080")),
        "http://web:8080",
        Severity.ERROR,
        "Service shop/web",
        "(http://web:8080)",
    ),
    (
        "Secret from a later phase",
        "infrastructure",
        workload(
            "probe", "infra", SECRET_KEY + "                  name: gateway-token\n                  key: t\n"
        ),
        "name: gateway-token",
        Severity.ERROR,
        "Secret infra/gateway-token",
        "which only phase config creates (clusters/site/config/gateway-token.yaml:1)",
    ),
    (
        "image pull Secret from a later phase",
        "infrastructure",
        workload("probe", "infra", pod="      imagePullSecrets:\n        - name: gateway-token\n"),
        "- name: gateway-token",
        Severity.ERROR,
        "Secret infra/gateway-token",
        "(imagePullSecrets gateway-token)",
    ),
    (
        "envFrom ConfigMap from a later phase",
        "config",
        workload(
            "probe",
            "shop",
            "          envFrom:\n            - configMapRef:\n                name: web-settings\n",
        ),
        "name: web-settings",
        Severity.ERROR,
        "ConfigMap shop/web-settings",
        "Flux applies apps only after config is Ready, so config is never Ready",
    ),
    (
        "a phase that does not depend on the other",
        "storage",
        workload("backup", "store", env("http://gateway-admin.infra.svc:9000")),
        "gateway-admin.infra.svc",
        Severity.ERROR,
        "Service infra/gateway-admin",
        "storage does not depend on infrastructure, so storage's wait can time out before it exists",
    ),
    (
        "a chart's Service",
        "infrastructure",
        workload("probe", "infra", env("http://grafana.shop.svc:80")),
        "grafana.shop.svc",
        Severity.ERROR,
        "Service shop/grafana",
        "(clusters/site/apps/grafana.yaml:1, a Service of the chart of HelmRelease shop/grafana)",
    ),
    (
        "valuesFrom a ConfigMap of a later phase",
        "infrastructure",
        HELM_RELEASE,
        "name: web-settings",
        Severity.ERROR,
        "ConfigMap shop/web-settings",
        "HelmRelease shop/cache (infrastructure, waits) refers to ConfigMap shop/web-settings",
    ),
    (
        "dependsOn a HelmRelease of a later phase",
        "infrastructure",
        HELM_RELEASE.replace(
            "  valuesFrom:\n    - kind: ConfigMap\n      name: web-settings\n",
            "  dependsOn:\n    - name: grafana\n",
        ),
        "name: grafana",
        Severity.ERROR,
        "HelmRelease shop/grafana",
        "(dependsOn grafana), which only phase apps creates (clusters/site/apps/grafana.yaml:1)",
    ),
    (
        "a ConfigMap's data",
        "infrastructure",
        ROUTES,
        "web.shop.svc",
        Severity.ERROR,
        "Service shop/web",
        "ConfigMap infra/gateway-routes (infrastructure, waits)",
    ),
    (
        "optional Secret: a warning",
        "infrastructure",
        workload(
            "probe",
            "infra",
            SECRET_KEY + "                  name: gateway-token\n                  key: t\n"
            "                  optional: true\n",
        ),
        "name: gateway-token",
        Severity.WARNING,
        "Secret infra/gateway-token",
        "it is optional, so Deployment infra/probe starts without it",
    ),
    (
        "a phase that does not wait: a warning",
        "apps",
        workload("dash", "shop", env("http://prometheus.watch.svc:9090")),
        "prometheus.watch.svc",
        Severity.WARNING,
        "Service watch/prometheus",
        "apps does not wait for it, so it converges once monitoring is applied",
    ),
]


def plant(root: Path, phase: str, text: str) -> str:
    """Add ``text`` as planted.yaml to a phase's folder and its kustomization; the file's path."""
    folder = root / "clusters" / "site" / phase
    (folder / "planted.yaml").write_text(text)
    kustomization = folder / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "  - planted.yaml\n")
    return f"clusters/site/{phase}/planted.yaml"


@pytest.mark.parametrize(
    ("phase", "text", "needle", "severity", "target", "phrase"),
    [case[1:] for case in PLANTED],
    ids=[case[0] for case in PLANTED],
)
def test_planted_forward_reference_is_caught(
    tmp_path: Path, phase: str, text: str, needle: str, severity: Severity, target: str, phrase: str
) -> None:
    root = fixture("phases", tmp_path)
    rel = plant(root, phase, text)
    [finding] = forward(root)
    assert (finding.severity, finding.phase, finding.file) == (severity, phase, rel)
    assert finding.line == line_holding(root, rel, needle)
    assert f"refers to {target} (" in finding.message
    assert phrase in finding.message


def test_health_check_makes_a_phase_wait(tmp_path: Path) -> None:
    """monitoring does not wait, but a health check on the planted Deployment makes it block."""
    root = fixture("phases", tmp_path)
    plant(root, "monitoring", workload("scraper", "watch", env("http://web.shop.svc:8080")))
    ks_file = root / "clusters" / "site" / "monitoring.yaml"
    ks = yaml.safe_load(ks_file.read_text())
    ks["spec"]["healthChecks"] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scraper", "namespace": "watch"}
    ]
    ks_file.write_text(yaml.safe_dump(ks))
    [finding] = forward(root)
    assert finding.severity is Severity.ERROR
    assert "(monitoring, waits)" in finding.message
    assert "monitoring does not depend on apps" in finding.message


# --- the shipped tree --------------------------------------------------------------------------------


def test_shipped_tree_has_no_forward_reference_error() -> None:
    _, findings = validate(REPO)
    assert [f for f in findings.errors if f.code == CODE] == []


# --- the parts, on plain objects ---------------------------------------------------------------------


def pod_of(spec: dict[str, Any], namespace: str = "ns") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": spec,
    }


def targets(obj: dict[str, Any], config_maps: Any = None) -> list[tuple[str, str, str, bool]]:
    return [(r.kind, r.namespace, r.name, r.optional) for r in references(obj, config_maps)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://unifi-0.unifi.unifi.svc.cluster.local:8080", [("Service", "unifi", "unifi", False)]),
        ("--upstream=redis.cache.svc:6379", [("Service", "cache", "redis", False)]),
        ("postgres://app@db.data:5432/app", [("Service", "data", "db", False)]),
        ("tcp://mqtt:1883", [("Service", "ns", "mqtt", False)]),
        ("mqtt:1883", [("Service", "ns", "mqtt", False)]),
        ("mqtt", []),  # a bare word is no host
        ("https://example.com/x", [("Service", "com", "example", False)]),  # no such Service: no finding
        ("see docs.svc-things.io", []),
        ("0.0.0.0:8080", []),
        ("10.0.0.1", []),
    ],
)
def test_hosts_in_values(value: str, expected: list[tuple[str, str, str, bool]]) -> None:
    spec = {"containers": [{"name": "c", "image": "x", "args": [value]}]}
    assert targets(pod_of(spec)) == expected


def test_image_fields_are_no_hosts() -> None:
    spec = {
        "containers": [{"name": "c", "image": "mqtt:1883"}],
        "initContainers": [{"image": "db.data:5000"}],
    }
    assert targets(pod_of(spec)) == []


def test_object_references_of_a_pod() -> None:
    spec = {
        "imagePullSecrets": [{"name": "pull"}],
        "containers": [
            {
                "name": "c",
                "env": [
                    {
                        "name": "A",
                        "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": True}},
                    }
                ],
                "envFrom": [{"secretRef": {"name": "env-secret"}}, {"configMapRef": {"name": "env-cm"}}],
            }
        ],
        "volumes": [
            {"name": "s", "secret": {"secretName": "vol-secret", "defaultMode": 420}},
            {"name": "c", "configMap": {"name": "vol-cm"}},
            {
                "name": "p",
                "projected": {
                    "sources": [{"secret": {"name": "proj-secret"}}, {"configMap": {"name": "proj-cm"}}]
                },
            },
        ],
    }
    assert sorted(targets(pod_of(spec))) == sorted(
        [
            ("Secret", "ns", "pull", False),
            ("ConfigMap", "ns", "cm", True),
            ("Secret", "ns", "env-secret", False),
            ("ConfigMap", "ns", "env-cm", False),
            ("Secret", "ns", "vol-secret", False),
            ("ConfigMap", "ns", "vol-cm", False),
            ("Secret", "ns", "proj-secret", False),
            ("ConfigMap", "ns", "proj-cm", False),
        ]
    )


def test_chart_values_merge_and_release_namespace() -> None:
    """valuesFrom ConfigMaps merged under values (helm-controller's order); references in the values
    are in the release's namespace, valuesFrom in the HelmRelease's.
    """
    release = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "app", "namespace": "flux-system"},
        "spec": {
            "targetNamespace": "apps",
            "valuesFrom": [
                {"kind": "ConfigMap", "name": "app-values"},
                {"kind": "Secret", "name": "app-secret"},
            ],
            "values": {"url": "http://inline.other.svc", "existingSecret": "app-creds"},
        },
    }
    text = "url: http://overridden.other.svc\nsidecar:\n  upstream: http://cache:6379\n"
    config_maps = {("flux-system", "app-values"): {"data": {"values.yaml": text}}}
    refs = references(release, config_maps)
    assert [(r.kind, r.namespace, r.name) for r in refs] == [
        ("ConfigMap", "flux-system", "app-values"),
        ("Secret", "flux-system", "app-secret"),
        ("Secret", "apps", "app-creds"),
        ("Service", "other", "inline"),
        ("Service", "apps", "cache"),
    ]
    inline, from_config_map = refs[3], refs[4]
    assert (inline.path, inline.entry) == (("spec", "values", "url"), None)
    assert (from_config_map.entry, from_config_map.line) == (("flux-system", "app-values", "values.yaml"), 3)


def test_creations() -> None:
    release = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "db", "namespace": "flux-system"},
        "spec": {"targetNamespace": "data"},
    }
    assert release_of(release) == ("data", "data-db")  # helm-controller's default release name
    made = creations(release, {"fullnameOverride": "postgres"})
    assert [(c.kind, c.namespace, c.name, c.prefix) for c in made] == [
        ("HelmRelease", "flux-system", "db", False),
        ("Service", "data", "data-db", True),
        ("Service", "data", "db", True),
        ("Service", "data", "postgres", True),
    ]
    assert made[2].covers(Reference("Service", "data", "db-primary", ""))
    assert not made[2].covers(Reference("Service", "data", "dbx", ""))
    assert not made[2].covers(Reference("Service", "other", "db", ""))
    external = {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "es", "namespace": "n"},
        "spec": {"target": {"name": "made"}},
    }
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "c", "namespace": "n"},
        "spec": {"secretName": "tls"},
    }
    assert [(c.kind, c.name) for c in creations(external) + creations(certificate)] == [
        ("Secret", "made"),
        ("Secret", "tls"),
    ]
    assert creations({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}) == [
        Creation("Service", "", "s")
    ]


def test_waits_for() -> None:
    deploy = {"kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}}
    phase = Phase("p", "flux-system", {"spec": {"wait": False}})
    assert not waits_for(phase, deploy)
    phase.obj["spec"]["healthChecks"] = [{"kind": "Deployment", "name": "d", "namespace": "n"}]
    assert waits_for(phase, deploy)
    assert waits_for(Phase("p", "flux-system", {"spec": {"wait": True}}), deploy)


def test_rule_is_documented() -> None:
    doc = (REPO / "docs" / "validate.md").read_text(encoding="utf-8")
    assert f"| `{CODE}` | error, warning |" in doc
    assert "## Forward references" in doc
