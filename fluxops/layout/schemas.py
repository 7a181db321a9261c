"""Object schemas as the cluster serves them: its Kubernetes release, Flux's kinds, and the tree's CRDs.

An object is checked against the first of:

1. the CRD of its kind among the cluster's objects or in a vendored chart's ``crds/`` folder;
2. Flux's kinds (``flux_schemas``: the CRDs of the shipped Flux release);
3. k3s's own kinds (served by every k3s server; accepted without a schema);
4. Kubernetes' kinds served by the release the cluster runs (``kube_schemas``).

Anything else has no known schema (``check`` returns None). Unknown fields are errors, as with
kubeconform ``-strict``. Results are cached by object content and the identity of the schema used,
so a cached run loads no schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.layout import flux_schemas, kube_schemas
from fluxops.layout.crd_schema import CrdKind, parse_crd
from fluxops.layout.findings import listing
from fluxops.layout.kube_versions import ClusterVersion, RepositoryVersions
from fluxops.layout.schema_errors import Problem, problems_of

__all__ = ["Catalog", "Problem", "SchemaChecker", "is_builtin_group", "needs_crd"]

CACHE_FORMAT = "2"
CRD_KIND = ("apiextensions.k8s.io", "CustomResourceDefinition")
Versions = Callable[[str], ClusterVersion]


@dataclass
class Catalog:
    """What one cluster serves: the Kubernetes release checked against and the kinds of its CRDs.

    ``runs`` is what the cluster was found to run; ``note`` says why ``release`` differs from it.
    """

    release: str
    runs: ClusterVersion = field(default_factory=ClusterVersion)
    note: str = ""
    crds: dict[tuple[str, str], CrdKind] = field(default_factory=dict)

    def add_crd(self, obj: dict[str, Any], origin: str) -> None:
        """Register the kind a CRD object defines (the first definition of a kind wins)."""
        crd = parse_crd(obj, origin)
        if crd is not None:
            self.crds.setdefault((crd.group, crd.kind), crd)


class SchemaChecker:
    """Checks objects against the schemas of a cluster's catalog, caching results by content.

    ``versions`` says which Kubernetes release a cluster runs; with ``root`` it is read from the
    fluxops project there (``kube_versions.RepositoryVersions``); with neither, every cluster is
    checked against the newest release here.
    """

    def __init__(
        self, cache_file: Path | None = None, *, root: Path | None = None, versions: Versions | None = None
    ) -> None:
        self.cache_file = cache_file
        self.versions = versions or (RepositoryVersions(root) if root is not None else None)
        self._cache: dict[str, list[list[Any]] | None] = {}
        self._dirty = False
        self._lock = threading.Lock()
        if cache_file is not None and cache_file.is_file():
            try:
                self._cache = json.loads(cache_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._cache = {}

    def catalog(self, cluster: str | None = None, crds: Iterable[tuple[dict[str, Any], str]] = ()) -> Catalog:
        """The catalog of ``cluster``: its release and the given (CRD object, origin) pairs."""
        runs = (
            self.versions(cluster) if self.versions is not None and cluster is not None else ClusterVersion()
        )
        release, note = kube_schemas.choose(runs.release)
        if runs.problem:
            note = f"{runs.problem}; checked against Kubernetes {release}"
        found = Catalog(release, runs, note or "")
        for obj, origin in crds:
            found.add_crd(obj, origin)
        return found

    def check(self, obj: dict[str, Any], catalog: Catalog | None = None) -> list[Problem] | None:
        """Schema problems of one object (None: no schema known for its kind)."""
        api_version = str(obj.get("apiVersion", "") or "")
        kind = str(obj.get("kind", "") or "")
        if not api_version or not kind:
            return [Problem("object has no apiVersion or kind")]
        catalog = catalog or self.catalog()
        body = {k: v for k, v in obj.items() if k != "sops"}
        identity, run = _resolve(catalog, api_version, kind, body)
        key = hashlib.sha256(
            json.dumps([CACHE_FORMAT, identity, body], sort_keys=True, default=str).encode()
        ).hexdigest()
        with self._lock:
            if key in self._cache:
                cached = self._cache[key]
                return None if cached is None else [Problem(m, tuple(p), s) for m, p, s in cached]
        problems = run()
        with self._lock:
            self._cache[key] = (
                None if problems is None else [[p.message, list(p.path), p.severity] for p in problems]
            )
            self._dirty = True
        return problems

    def save(self) -> None:
        """Write the cache back if anything new was checked."""
        if self.cache_file is None or not self._dirty:
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._cache), encoding="utf-8")
            tmp.replace(self.cache_file)
        except OSError:
            pass


Check = Callable[[], "list[Problem] | None"]


def _resolve(catalog: Catalog, api_version: str, kind: str, body: dict[str, Any]) -> tuple[list[str], Check]:
    """What the object's result depends on, and how to compute it."""
    group, _, version = api_version.rpartition("/")
    crd = catalog.crds.get((group, kind))
    if crd is not None:
        return ["crd", crd.fingerprint(version)], lambda: check_crd(crd, body, api_version)
    if group in flux_schemas.groups():
        identity = ["flux", flux_schemas.release()]
        return identity, lambda: check_flux(body, group, kind, api_version)
    if group in kube_schemas.K3S_GROUPS:
        served = kind in kube_schemas.K3S_KINDS.get((group, version), ())
        return ["k3s", str(served)], lambda: [] if served else None
    identity = ["kubernetes", catalog.release, kube_schemas.data_version()]
    return identity, lambda: check_core(body, catalog.release, group, version, kind)


def check_crd(crd: CrdKind, obj: dict[str, Any], api_version: str) -> list[Problem]:
    """A custom resource against its CRD: a served version, deprecation, then the version's schema."""
    version = api_version.rpartition("/")[2]
    entry = crd.versions.get(version)
    served = crd.served
    if entry is None or not entry.served:
        use = f"use {served[0]}" if served else "it serves no version"
        return [
            Problem(
                f"apiVersion {api_version} is not served for {crd.kind} ({use}; CRD from {crd.origin})",
                ("apiVersion",),
            )
        ]
    problems: list[Problem] = []
    if entry.deprecated:
        advice = f"; use {served[0]}" if served and served[0] != api_version else ""
        problems.append(
            Problem(f"{api_version} is deprecated for {crd.kind}{advice}", ("apiVersion",), "warning")
        )
    return problems + crd.validate(obj, version)


def check_flux(obj: dict[str, Any], group: str, kind: str, api_version: str) -> list[Problem]:
    """A Flux object against the CRD of the shipped Flux release."""
    crd = flux_schemas.crd(group, kind)
    if crd is None:
        known = listing(flux_schemas.kinds(group))
        return [
            Problem(f"{kind} is not a kind of {group} in Flux {flux_schemas.release()} ({known})", ("kind",))
        ]
    return check_crd(crd, obj, api_version)


def check_core(
    obj: dict[str, Any], release: str, group: str, version: str, kind: str
) -> list[Problem] | None:
    """A Kubernetes kind against the release's strict schema; None when no release serves it."""
    api_version = f"{group}/{version}" if group else version
    validator = kube_schemas.validator(release, group, version, kind)
    if validator is None:
        return _not_served(release, group, kind, api_version)
    problems = problems_of(validator.iter_errors(obj))
    stable = [
        v for v in kube_schemas.versions_of(release, group, kind) if "alpha" not in v and "beta" not in v
    ]
    if "alpha" in version:
        problems.insert(
            0,
            Problem(
                f"{api_version} is an alpha API: served only where the API server enables it "
                "(--runtime-config)",
                ("apiVersion",),
                "warning",
            ),
        )
    elif "beta" in version and stable:
        use = f"{group}/{stable[0]}" if group else stable[0]
        problems.insert(
            0, Problem(f"{api_version} is a beta API for {kind}; use {use}", ("apiVersion",), "warning")
        )
    return problems


def _not_served(release: str, group: str, kind: str, api_version: str) -> list[Problem] | None:
    """Why Kubernetes ``release`` does not serve this kind at this version (None: no release has the kind)."""
    version = api_version.rpartition("/")[2]
    key = kube_schemas.release_key
    serving = kube_schemas.serving(group, kind)
    exact = [r for r in serving if version in kube_schemas.versions_of(r, group, kind)]
    others = kube_schemas.versions_of(release, group, kind)
    if exact:
        when = (
            f"from Kubernetes {exact[0]}" if key(exact[0]) > key(release) else f"up to Kubernetes {exact[-1]}"
        )
        why = f"served {when}"
    elif serving and not others:
        first, last = serving[0], serving[-1]
        why = f"{kind} is served only {f'from {first}' if key(first) > key(release) else f'up to {last}'}"
    elif not others:
        if group not in kube_schemas.groups(release):
            return None
        where = f"group {group}" if group else "the core group"
        return [Problem(f"{kind} is not a kind of {where} in Kubernetes {release}", ("kind",))]
    else:
        why = ""
    if others:
        use = listing(f"{group}/{v}" if group else v for v in others)
        why = f"{why}; use {use}" if why else f"use {use}"
    message = f"apiVersion {api_version} is not served for {kind} by Kubernetes {release} ({why})"
    return [Problem(message, ("apiVersion",))]


def is_builtin_group(group: str, release: str | None = None) -> bool:
    """True for a group the cluster serves without a CRD: Kubernetes' own (in ``release``, default the
    newest here) and k3s's."""
    release = release or kube_schemas.releases()[-1]
    return group in kube_schemas.groups(release) or group in kube_schemas.K3S_GROUPS


def needs_crd(group: str, release: str | None = None) -> bool:
    """True for a group whose kinds need a CRD from the tree: neither Kubernetes', k3s's nor Flux's."""
    return not is_builtin_group(group, release) and group not in flux_schemas.groups()


def crd_objects(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions among ``objects``."""
    return [
        o
        for o in objects
        if o.get("kind") == CRD_KIND[1] and str(o.get("apiVersion", "")).startswith(CRD_KIND[0] + "/")
    ]
