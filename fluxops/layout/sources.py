"""Read the tree's YAML as kustomize reads it, with line numbers, and find objects back in their files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.clusters import KUSTOMIZATION_FILES
from fluxops.layout.yaml_compat import LineDict, LineList, YamlSyntaxError, load_all

__all__ = ["LineDict", "LineList", "SourceDoc", "Sources", "YamlSyntaxError", "line_of", "load_all"]

YAML_SUFFIXES = (".yaml", ".yml")


def line_of(node: Any, *keys: Any) -> int | None:
    """The line of ``node[k1][k2]...`` (of the last key or item), or of the deepest part found."""
    line = getattr(node, "line", None) or None
    for key in keys:
        if isinstance(node, LineDict) and key in node:
            line = node.key_lines.get(key, line)
            node = node[key]
        elif isinstance(node, LineList) and isinstance(key, int) and 0 <= key < len(node):
            line = node.item_lines[key]
            node = node[key]
        else:
            break
    return line


@dataclass(frozen=True)
class SourceDoc:
    """One YAML document of a file in the tree."""

    file: str
    index: int
    data: Any

    @property
    def line(self) -> int:
        """Where the document starts (1-based)."""
        return getattr(self.data, "line", 1) or 1

    @property
    def kind(self) -> str:
        """The document's ``kind`` or an empty string."""
        return str(self.data.get("kind", "")) if isinstance(self.data, dict) else ""

    @property
    def name(self) -> str:
        """``metadata.name`` or an empty string."""
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    @property
    def namespace(self) -> str:
        """``metadata.namespace`` or an empty string."""
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        return str(meta.get("namespace", "") or "") if isinstance(meta, dict) else ""


@dataclass
class Sources:
    """Every YAML file under a folder, parsed, with parse errors kept apart.

    Files a configMapGenerator or secretGenerator reads (``texts``) are data to kustomize, not
    resources: they are parsed as YAML, but without kustomize's resource rules.
    """

    root: Path
    docs: dict[str, list[SourceDoc]] = field(default_factory=dict)
    errors: dict[str, YamlSyntaxError] = field(default_factory=dict)
    texts: set[str] = field(default_factory=set)
    _by_object: dict[tuple[str, str], list[SourceDoc]] = field(default_factory=dict)

    def add_file(self, path: Path, *, resource: bool | None = None) -> None:
        """Parse one file and index its documents (``resource``: as kustomize reads resources).

        By default a kustomization file and a generator's input are not read as resources.
        """
        rel = path.relative_to(self.root).as_posix()
        if resource is None:
            resource = path.name not in KUSTOMIZATION_FILES and os.path.normpath(path) not in self.texts
        try:
            parsed = load_all(path.read_text(encoding="utf-8"), resource=resource)
        except YamlSyntaxError as exc:
            self.errors[rel] = exc
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.errors[rel] = YamlSyntaxError(f"cannot read: {exc}", None)
            return
        docs = [SourceDoc(rel, i, d) for i, d in enumerate(parsed) if d is not None]
        self.docs[rel] = docs
        for doc in docs:
            self._index(doc)
        if len(docs) == 1 and docs[0].kind == "List" and isinstance(docs[0].data.get("items"), list):
            # kustomize reads a file holding one List as the List's items.
            for item in docs[0].data["items"]:
                self._index(SourceDoc(rel, 0, item))

    def _index(self, doc: SourceDoc) -> None:
        if doc.kind and doc.name:
            self._by_object.setdefault((doc.kind, doc.name), []).append(doc)

    def find(
        self,
        kind: str,
        name: str,
        namespace: str = "",
        under: tuple[str, ...] = (),
        *,
        like: dict[str, Any] | None = None,
        occurrence: int = 0,
    ) -> SourceDoc | None:
        """The source document of an object.

        Preferred, in turn: a document in one of the ``under`` folders; one with the object's
        namespace; the one sharing most values with ``like`` (the built object, so that two objects
        of the same kind and name each find their own document); among documents still equal, the
        ``occurrence``-th in file order (for the n-th object of a cluster with that kind, namespace
        and name).
        """
        candidates = self._by_object.get((kind, name), [])
        if len(candidates) <= 1:
            return candidates[0] if candidates else None

        def rank(doc: SourceDoc) -> tuple[bool, bool]:
            inside = any(doc.file.startswith(u.rstrip("/") + "/") for u in under)
            return inside, bool(namespace) and doc.namespace == namespace

        ranks = [rank(doc) for doc in candidates]
        top = [doc for doc, r in zip(candidates, ranks, strict=True) if r == max(ranks)]
        if like is not None and len(top) > 1:
            scores = [shared_values(doc.data, like) for doc in top]
            top = [doc for doc, score in zip(top, scores, strict=True) if score == max(scores)]
        return top[min(max(occurrence, 0), len(top) - 1)]

    def files(self) -> list[str]:
        """Every YAML file read, parsed or not, sorted."""
        return sorted({*self.docs, *self.errors})


def shared_values(one: Any, other: Any) -> int:
    """How many scalar values two documents hold at the same place."""
    if isinstance(one, dict) and isinstance(other, dict):
        return sum(shared_values(one[k], other[k]) for k in one.keys() & other.keys())
    if isinstance(one, list) and isinstance(other, list):
        return sum(shared_values(a, b) for a, b in zip(one, other, strict=False))
    return int(not isinstance(one, dict | list) and one == other)


def generator_refs(kustomization: Any) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Every file a kustomization's configMapGenerator or secretGenerator reads, with its key path."""
    if not isinstance(kustomization, dict):
        return
    for key in ("configMapGenerator", "secretGenerator"):
        for i, gen in enumerate(kustomization.get(key) or []):
            if not isinstance(gen, dict):
                continue
            for sub in ("files", "envs"):
                for j, entry in enumerate(gen.get(sub) or []):
                    if isinstance(entry, str):
                        yield entry.split("=", 1)[-1], (key, i, sub, j)
            if isinstance(gen.get("env"), str):
                yield gen["env"], (key, i, "env")


def yaml_files(folder: Path) -> list[Path]:
    """Every YAML file under ``folder``, skipping hidden folders, sorted."""
    found = []
    for path in folder.rglob("*"):
        if path.suffix in YAML_SUFFIXES and path.is_file():
            if any(part.startswith(".") for part in path.relative_to(folder).parts[:-1]):
                continue
            found.append(path)
    return sorted(found)


def read_sources(root: Path, folders: list[Path]) -> Sources:
    """Parse every YAML file under ``folders``; file names in the result are relative to ``root``.

    Kustomization files are read first: the files their generators read are not resources.
    """
    sources = Sources(root)
    paths: list[Path] = []
    for folder in folders:
        if folder.is_file():
            paths.append(folder)
        elif folder.is_dir():
            paths.extend(yaml_files(folder))
    kustomizations = [p for p in paths if p.name in KUSTOMIZATION_FILES]
    for path in kustomizations:
        sources.add_file(path)
        for doc in sources.docs.get(path.relative_to(root).as_posix(), [])[:1]:
            sources.texts.update(os.path.normpath(path.parent / ref) for ref, _ in generator_refs(doc.data))
    for path in paths:
        if path.name not in KUSTOMIZATION_FILES:
            sources.add_file(path)
    return sources
