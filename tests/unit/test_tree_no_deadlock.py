"""The shipped tree reconciles without a deadlock: no Kustomization waits, directly or through the
Kustomizations it waits for, for something that can only exist once it is Ready itself.

Flux's rules, as the tree uses them: a Kustomization starts once every ``dependsOn`` entry is Ready;
a Kustomization another one applies exists once its applier has started; a Kustomization with
``wait: true`` is Ready once everything it applies is healthy (Flux Kustomizations among them: their
Ready condition), one with ``healthChecks`` once the objects named there are.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxops.layout.model import Cluster, Key, Phase, is_flux_kustomization, meta
from fluxops.layout.tree import load
from fluxops.layout.validate import validate
from tests.layout_fixtures import copy_tree, pristine_root

FLUX_KS = "kustomize.toolkit.fluxcd.io"


def _applier(cluster: Cluster) -> dict[Key, Phase]:
    """Each Kustomization a phase applies -> that phase."""
    return {
        (meta(obj)[1] or phase.namespace, meta(obj)[0]): phase
        for phase in cluster.phases
        for obj in phase.objects
        if is_flux_kustomization(obj)
    }


def _waits_for(phase: Phase) -> set[Key]:
    """The Flux Kustomizations whose Ready condition the phase's own Ready condition needs."""
    if phase.wait:
        applied = [o for o in phase.objects if is_flux_kustomization(o)]
        return {(meta(o)[1] or phase.namespace, meta(o)[0]) for o in applied}
    checks = phase.spec.get("healthChecks") or []
    return {
        (str(c.get("namespace") or phase.namespace), str(c.get("name")))
        for c in checks
        if c.get("kind") == "Kustomization" and str(c.get("apiVersion", "")).startswith(FLUX_KS)
    }


def _needs(cluster: Cluster, key: Key, applier: dict[Key, Phase]) -> set[Key]:
    """Every Kustomization that must be Ready before ``key`` can be Ready, transitively: its
    dependencies, what it waits for, and what its appliers (up to the cluster folder) depend on."""
    by_key = {p.key: p for p in cluster.phases}
    seen: set[Key] = set()
    stack = [key]
    while stack:
        phase = by_key.get(stack.pop())
        if phase is None:
            continue
        direct = set(phase.depends_refs) | _waits_for(phase)
        parent = applier.get(phase.key)
        while parent is not None:  # it exists once its applier started: after the applier's dependencies
            direct |= set(parent.depends_refs)
            parent = applier.get(parent.key)
        for dep in direct - seen:
            seen.add(dep)
            stack.append(dep)
    return seen


def deadlocks(cluster: Cluster) -> list[str]:
    """Kustomizations that need themselves to be Ready before they can be Ready."""
    applier = _applier(cluster)
    return sorted(p.name for p in cluster.phases if p.key in _needs(cluster, p.key, applier))


@pytest.mark.parametrize("name", ["lab", "phx"])
def test_the_shipped_tree_has_no_deadlock(name: str) -> None:
    cluster = load(pristine_root(), name).clusters[name]
    assert deadlocks(cluster) == []


def test_lab_components_wait_only_for_what_later_phases_need() -> None:
    """infrastructure and infrastructure-config are Ready without external-dns, Traefik and Twingate."""
    lab = load(pristine_root(), "lab").clusters["lab"]
    phases = ("infrastructure", "infrastructure-config")
    waited = {p.name: {n for _, n in _waits_for(p)} for p in lab.phases if p.name in phases}
    assert waited == {
        "infrastructure": {"metallb"},
        "infrastructure-config": {"metallb-config", "traefik-config"},
    }
    external_dns = lab.phase("external-dns")
    assert external_dns is not None and "adguard" in external_dns.depends_on


def _old_lab(root: Path) -> None:
    """The infrastructure phase waits for every component it applies, as one wait: true phase would."""
    path = root / "k8s/clusters/lab/infrastructure.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("  healthChecks:\n")] + "  wait: true\n", encoding="utf-8")


def test_a_phase_waiting_for_every_component_deadlocks(tmp_path: Path) -> None:
    """With wait: true, infrastructure waits for external-dns, which waits for AdGuard, which needs
    the pool infrastructure-config applies only once infrastructure is Ready."""
    root = copy_tree(tmp_path / "repo")
    _old_lab(root)
    lab = load(root, "lab").clusters["lab"]
    assert {"infrastructure", "external-dns", "adguard", "traefik"} <= set(deadlocks(lab))


def test_external_dns_without_its_dependency_on_adguard_is_a_forward_reference(tmp_path: Path) -> None:
    root = copy_tree(tmp_path / "repo")
    ks = root / "k8s/clusters/lab/infrastructure/external-dns/ks.yaml"
    ks.write_text(ks.read_text(encoding="utf-8").replace("    - name: adguard\n", ""), encoding="utf-8")
    _, findings = validate(root, "lab")
    [hit] = [f for f in findings.errors if f.code == "forward-reference"]
    assert hit.file == "k8s/clusters/lab/infrastructure/external-dns/values.yaml"
    assert "Service adguard/adguard" in hit.message
    _, shipped = validate(copy_tree(tmp_path / "shipped"), "lab")
    assert not [f for f in shipped.items if f.code == "forward-reference"]
