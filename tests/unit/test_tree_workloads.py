"""Every workload the shipped tree runs asks for resources, and says how it runs.

Workloads the tree defines itself (Deployment, StatefulSet, DaemonSet) give each container resource
requests and a securityContext (pod or container level); HelmReleases give their charts resource
requests in their values (inline or from a values ConfigMap), as each chart's own keys name them.
The objects are each cluster's phases as Flux builds them (the real kustomize).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from fluxops.layout.merge import merge_maps
from fluxops.layout.model import meta
from fluxops.layout.tree import load
from tests.layout_fixtures import pristine_root

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def _objects(name: str) -> list[dict[str, Any]]:
    cluster = load(pristine_root(), name).clusters[name]
    return [o for phase in cluster.phases for o in phase.objects]


def _requests(values: Any) -> Iterator[dict[str, Any]]:
    """Every ``resources.requests`` mapping anywhere in a chart's values."""
    if isinstance(values, dict):
        for key, value in values.items():
            if key == "resources" and isinstance(value, dict) and isinstance(value.get("requests"), dict):
                yield value["requests"]
            else:
                yield from _requests(value)
    elif isinstance(values, list):
        for item in values:
            yield from _requests(item)


def _release_values(release: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A HelmRelease's values as helm-controller merges them: each valuesFrom ConfigMap, then values."""
    merged: dict[str, Any] = {}
    namespace = meta(release)[1]
    maps = {meta(o)[0]: o for o in objects if o.get("kind") == "ConfigMap" and meta(o)[1] == namespace}
    for ref in release["spec"].get("valuesFrom") or []:
        data = (maps.get(ref["name"]) or {}).get("data") or {}
        merged = merge_maps(merged, yaml.safe_load(data.get(ref.get("valuesKey", "values.yaml"), "")) or {})
    return merge_maps(merged, release["spec"].get("values") or {})


@pytest.mark.parametrize("name", ["lab", "phx"])
def test_every_container_the_tree_defines_has_requests_and_a_security_context(name: str) -> None:
    workloads = [o for o in _objects(name) if o.get("kind") in WORKLOADS]
    assert workloads
    for obj in workloads:
        pod = obj["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{obj['kind']} {meta(obj)[1]}/{meta(obj)[0]} container {container['name']}"
            assert (container.get("resources") or {}).get("requests"), where
            assert pod.get("securityContext") or container.get("securityContext"), where


@pytest.mark.parametrize("name", ["lab", "phx"])
def test_every_helm_release_gives_its_chart_resource_requests(name: str) -> None:
    objects = _objects(name)
    releases = [o for o in objects if o.get("kind") == "HelmRelease"]
    assert releases
    for release in releases:
        found = list(_requests(_release_values(release, objects)))
        assert found and all(r.get("cpu") or r.get("memory") for r in found), meta(release)
