"""The repository as fluxops sees it: clusters, and the Flux Kustomizations (phases) of each."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops import clusters

CACHE_ENV = "FLUXOPS_CACHE_DIR"  # where layout builds are cached, instead of the checkout

FLUX_KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io"
FLUX_GROUP_SUFFIX = ".toolkit.fluxcd.io"
BOOTSTRAP_NAME = "flux-system"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# The proposal's phases: what each must depend on (directly or transitively) and whether it waits.
EXPECTED_DEPENDS: dict[str, tuple[str, ...]] = {
    "infrastructure": ("crds",),
    "storage": ("crds",),
    "infrastructure-config": ("infrastructure", "storage"),
    "apps": ("infrastructure-config",),
}
MUST_WAIT = ("crds", "infrastructure", "storage", "infrastructure-config")
SHOULD_NOT_WAIT = ("apps",)
PHASE_ORDER = ("crds", "infrastructure", "storage", "infrastructure-config", "apps")


def group_of(api_version: str) -> str:
    """The API group of an apiVersion (empty for the core group)."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def is_flux_kustomization(obj: Any) -> bool:
    """True for a Flux Kustomization (not a kustomize config file)."""
    return (
        isinstance(obj, dict)
        and obj.get("kind") == "Kustomization"
        and group_of(str(obj.get("apiVersion", ""))) == FLUX_KUSTOMIZE_GROUP
    )


def meta(obj: dict[str, Any]) -> tuple[str, str]:
    """(name, namespace) of an object; namespace empty when unset."""
    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return str(md.get("name", "")), str(md.get("namespace", "") or "")


@dataclass
class Phase:
    """One Flux Kustomization of a cluster: where it builds from and what it waits for."""

    name: str
    namespace: str
    obj: dict[str, Any]
    src: Any = None
    file: str = ""
    line: int | None = None
    folder: Path | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)
    built: bool = False

    @property
    def spec(self) -> dict[str, Any]:
        """The object's spec (empty if missing)."""
        spec = self.obj.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def path(self) -> str:
        """``spec.path`` as written (Flux's default is the source root)."""
        return str(self.spec.get("path", "./") or "./")

    @property
    def depends_on(self) -> list[str]:
        """Names of the Kustomizations this one waits for."""
        deps = self.spec.get("dependsOn") or []
        return [str(d.get("name", "")) for d in deps if isinstance(d, dict)]

    @property
    def wait(self) -> bool:
        """``spec.wait`` (Flux's default is false)."""
        return self.spec.get("wait") is True

    @property
    def decryption(self) -> dict[str, Any]:
        """``spec.decryption`` or an empty dict."""
        dec = self.spec.get("decryption")
        return dec if isinstance(dec, dict) else {}

    @property
    def where(self) -> dict[str, Any]:
        """Location keywords for a finding about this phase."""
        return {"file": self.file, "line": self.line, "phase": self.name}


@dataclass
class Cluster:
    """A cluster's folder under k8s/clusters and its phases, in file order."""

    name: str
    folder: Path
    phases: list[Phase] = field(default_factory=list)

    def phase(self, name: str) -> Phase | None:
        """The phase called ``name``, if any."""
        return next((p for p in self.phases if p.name == name), None)

    def ancestors(self, name: str) -> set[str]:
        """Every phase ``name`` depends on, directly or transitively."""
        by_name = {p.name: p for p in self.phases}
        seen: set[str] = set()
        stack = list(by_name[name].depends_on) if name in by_name else []
        while stack:
            dep = stack.pop()
            if dep in seen:
                continue
            seen.add(dep)
            if dep in by_name:
                stack.extend(by_name[dep].depends_on)
        return seen


@dataclass(frozen=True)
class Repo:
    """Where the tree lives inside a checkout."""

    root: Path

    @property
    def k8s(self) -> Path:
        """The GitOps tree."""
        return self.root / "k8s"

    @property
    def clusters_dir(self) -> Path:
        """The folder holding one folder per cluster."""
        return self.k8s / "clusters"

    @property
    def base(self) -> Path:
        """The shared base."""
        return self.k8s / "base"

    @property
    def sops_config(self) -> Path:
        """The repository's .sops.yaml."""
        return self.root / ".sops.yaml"

    @property
    def cache_dir(self) -> Path:
        """The build cache: ``$FLUXOPS_CACHE_DIR/kustomize``, else ``.fluxops/cache/kustomize``."""
        folder = os.environ.get(CACHE_ENV)
        return (Path(folder) if folder else self.root / ".fluxops" / "cache") / "kustomize"

    def cluster_names(self) -> list[str]:
        """Names of every cluster folder, sorted."""
        return clusters.names(self.root)

    def rel(self, path: Path) -> str:
        """``path`` relative to the checkout, POSIX style."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def source_path(self, phase_path: str) -> Path:
        """Where a Flux Kustomization's ``spec.path`` points (the Git source root is the checkout)."""
        return (self.root / phase_path.lstrip("/")).resolve()
