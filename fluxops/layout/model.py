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

Key = tuple[str, str]  # (namespace, name) of a Kustomization

# The fluxops-phases policy (this repository's conventions, :mod:`fluxops.layout.policy`): the phases,
# what each must depend on (directly or transitively) and whether it waits. Flux's own rules never use
# these names; displays use PHASE_ORDER to break ties.
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
    def key(self) -> Key:
        """(namespace, name): what a dependsOn entry names."""
        return (self.namespace, self.name)

    @property
    def depends_on(self) -> list[str]:
        """Names of the Kustomizations this one waits for."""
        return [name for _, name in self.depends_refs]

    @property
    def depends_refs(self) -> list[Key]:
        """(namespace, name) of each dependsOn entry; the namespace defaults to this one's, as in Flux."""
        deps = self.spec.get("dependsOn")
        return [
            (str(d.get("namespace") or self.namespace), str(d.get("name", "")))
            for d in (deps if isinstance(deps, list) else [])
            if isinstance(d, dict)
        ]

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


@dataclass(frozen=True)
class Entry:
    """How a cluster was found, and the source that is the repository itself.

    ``name``/``namespace`` are the entry Kustomization's (the one Flux reconciles first, bootstrap's
    ``flux-system``); ``obj`` is its document when the tree holds it (else the cluster folder is
    built as a Kustomization with only ``spec.path`` would build it). ``source`` is (kind, namespace,
    name) of the repository's own source: the entry's ``sourceRef``, else bootstrap's
    GitRepository ``flux-system/flux-system``. ``how`` says which discovery rule found it.
    """

    name: str = BOOTSTRAP_NAME
    namespace: str = BOOTSTRAP_NAME
    file: str = ""
    line: int | None = None
    obj: dict[str, Any] | None = None
    source: tuple[str, str, str] = ("GitRepository", BOOTSTRAP_NAME, BOOTSTRAP_NAME)
    how: str = "entry"

    @property
    def key(self) -> Key:
        """(namespace, name) of the entry Kustomization."""
        return (self.namespace, self.name)


@dataclass
class Cluster:
    """A cluster: its folder (what its entry Kustomization applies) and its phases, in file order."""

    name: str
    folder: Path
    phases: list[Phase] = field(default_factory=list)
    entry: Entry = field(default_factory=Entry)

    def phase(self, name: str, namespace: str | None = None) -> Phase | None:
        """The phase called ``name`` (in ``namespace`` when given), if any."""
        return next(
            (p for p in self.phases if p.name == name and namespace in (None, p.namespace)),
            None,
        )

    def depended(self, ref: Key) -> Phase | None:
        """The phase a dependsOn entry (namespace, name) names; a phase or a reference without a
        namespace (unknown until applied) matches by name.
        """
        namespace, name = ref
        exact = next((p for p in self.phases if p.key == ref), None)
        if exact is not None or namespace == "":
            return exact or next((p for p in self.phases if p.name == name), None)
        return next((p for p in self.phases if p.name == name and p.namespace == ""), None)

    def ancestors(self, phase: Phase) -> set[Key]:
        """(namespace, name) of every Kustomization ``phase`` depends on, directly or transitively."""
        seen: set[Key] = set()
        stack = list(phase.depends_refs)
        while stack:
            ref = stack.pop()
            dep = self.depended(ref)
            key = dep.key if dep is not None else ref
            if key in seen:
                continue
            seen.add(key)
            if dep is not None:
                stack.extend(dep.depends_refs)
        return seen


@dataclass(frozen=True)
class Repo:
    """A repository holding a Flux tree (the source root of its own GitRepository).

    ``k8s``, ``clusters_dir``, ``base`` and ``cluster_names`` are this repository's own layout
    (``k8s/clusters/<name>``, ``k8s/base``), which the scaffold and the audit write; validation finds
    clusters with :mod:`fluxops.layout.discovery` instead.
    """

    root: Path

    @property
    def k8s(self) -> Path:
        """This repository's GitOps tree."""
        return self.root / "k8s"

    @property
    def clusters_dir(self) -> Path:
        """This repository's folder holding one folder per cluster."""
        return self.k8s / "clusters"

    @property
    def base(self) -> Path:
        """This repository's shared base."""
        return self.k8s / "base"

    @property
    def sops_config(self) -> Path:
        """The repository's .sops.yaml."""
        return self.root / ".sops.yaml"

    @property
    def cache_dir(self) -> Path:
        """The build cache: ``$FLUXOPS_CACHE_DIR/kustomize``; else ``.fluxops/cache/kustomize`` in a
        fluxops project (a root with invoke.yaml) and the user's cache folder for any other repository
        (entries are keyed by content and relative paths, so repositories can share it).
        """
        folder = os.environ.get(CACHE_ENV)
        if folder:
            return Path(folder) / "kustomize"
        if (self.root / "invoke.yaml").is_file():
            return self.root / ".fluxops" / "cache" / "kustomize"
        user = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(user) / "fluxops" / "kustomize"

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
