"""The fluxops-phases policy: each rule on a broken copy of this repository's tree, named in its findings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fluxops.layout import policy
from fluxops.layout.findings import Finding
from fluxops.layout.validate import validate
from fluxops.settings import LayoutSettings
from tests.layout_fixtures import REPO, THIS_REPO, copy_tree
from tests.unit.test_layout_validate import _cr_before_crd, edit, write

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names:
    kind: Widget
    plural: widgets
    singular: widget
    listKind: WidgetList
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""


def _crd_in_infrastructure(root: Path) -> None:
    write(root, "k8s/clusters/lab/infrastructure/widgets.yaml", CRD)
    edit(
        root,
        "k8s/clusters/lab/infrastructure/kustomization.yaml",
        "  - metallb/ks.yaml\n",
        "  - metallb/ks.yaml\n  - widgets.yaml\n",
    )


def _config_skips_storage(root: Path) -> None:
    edit(root, "k8s/clusters/lab/infrastructure-config.yaml", "    - name: storage\n", "")


def _infrastructure_checks_nothing(root: Path) -> None:
    """The phase neither waits nor health-checks its components: later phases would not wait for it."""
    path = root / "k8s/clusters/lab/infrastructure.yaml"
    text = path.read_text(encoding="utf-8")
    assert "  healthChecks:\n" in text
    path.write_text(text[: text.index("  healthChecks:\n")] + "  wait: false\n", encoding="utf-8")


def _apps_wait(root: Path) -> None:
    edit(root, "k8s/clusters/lab/apps.yaml", "  wait: false\n", "  wait: true\n")


def _crds_no_prune(root: Path) -> None:
    edit(root, "k8s/clusters/lab/crds.yaml", "prune: true", "prune: false")


def _crds_without_kustomization(root: Path) -> None:
    """Valid Flux (it generates the file), but plain kustomize would not build the folder as Flux does."""
    (root / "k8s/base/crds/kustomization.yaml").unlink()


CASES: list[tuple[str, Callable[[Path], None], str, str, str, str]] = [
    # (rule, break the tree, severity, file, the line's text, words in the message)
    (
        "crds-phase-only",
        _crd_in_infrastructure,
        "error",
        "infrastructure/widgets.yaml",
        "apiextensions",
        "widgets",
    ),
    (
        "phase-order",
        _config_skips_storage,
        "error",
        "lab/infrastructure-config.yaml",
        "dependsOn:",
        "storage",
    ),
    (
        "wait-blocking",
        _infrastructure_checks_nothing,
        "error",
        "lab/infrastructure.yaml",
        "wait: false",
        "spec.healthChecks",
    ),
    ("apps-nonblocking", _apps_wait, "warning", "lab/apps.yaml", "wait: true", "apps should not wait"),
    ("prune", _crds_no_prune, "warning", "lab/crds.yaml", "prune: false", "prune: true"),
    ("phase-names", _cr_before_crd, "warning", "lab/extras.yaml", "name: extras", "extras is not a phase"),
    (
        "no-kustomization",
        _crds_without_kustomization,
        "warning",
        "lab/crds.yaml",
        "kustomize.toolkit.fluxcd.io",
        "k8s/base/crds has no kustomization.yaml",
    ),
]


@pytest.mark.parametrize(
    ("rule", "breaker", "severity", "file", "text", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_rule(
    tmp_path: Path,
    rule: str,
    breaker: Callable[[Path], None],
    severity: str,
    file: str,
    text: str,
    words: str,
) -> None:
    root = copy_tree(tmp_path / "repo")
    breaker(root)
    _, findings = validate(root, layout=THIS_REPO)
    hits: list[Finding] = [f for f in findings.items if f.code == rule]
    assert hits, [(f.code, f.message) for f in findings.items]
    [hit] = [f for f in hits if file in f.file]
    assert (
        hit.severity == severity and words in hit.message and hit.message.endswith("(policy fluxops-phases)")
    )
    assert hit.cluster == "lab" and hit.line
    assert text in (root / hit.file).read_text(encoding="utf-8").splitlines()[hit.line - 1]
    _, flux_only = validate(root, layout=LayoutSettings())
    assert not [f for f in flux_only.items if f.code == rule or "policy" in f.message]


def test_components_of_a_phase_are_not_phases(tmp_path: Path) -> None:
    """Kustomizations a phase applies (lab's ks.yaml files) draw no phase-names warning; the same
    Kustomization applied by the cluster folder itself does."""
    root = copy_tree(tmp_path / "repo")
    _, findings = validate(root, "lab", layout=THIS_REPO)
    assert not [f for f in findings.items if f.code == "phase-names"]
    edit(root, "k8s/clusters/lab/kustomization.yaml", "  - apps.yaml\n", "  - apps.yaml\n  - extras.yaml\n")
    write(root, "k8s/clusters/lab/extras.yaml", (root / "k8s/clusters/lab/apps/unifi/ks.yaml").read_text()
          .replace("name: unifi\n", "name: extras\n"))  # fmt: skip
    _, findings = validate(root, "lab", layout=THIS_REPO)
    assert [f.file for f in findings.items if f.code == "phase-names"] == ["k8s/clusters/lab/extras.yaml"]


def test_every_rule_is_documented() -> None:
    doc = (REPO / "docs" / "validate.md").read_text(encoding="utf-8")
    assert set(policy.RULES) == {c[0] for c in CASES} | {"wait-blocking", "crd-order", "no-legacy-folders"}
    for rule in policy.RULES:
        assert f"| `{rule}` |" in doc, rule
