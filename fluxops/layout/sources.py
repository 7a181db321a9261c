"""Read the tree's YAML with line numbers (libyaml parser), and find objects back in their files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

YAML_SUFFIXES = (".yaml", ".yml")
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict):
    """A mapping that remembers the line it starts on and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list):
    """A sequence that remembers the line it starts on and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]


class _LineLoader(_Loader):  # type: ignore[misc, valid-type]
    """Safe loader whose mappings and sequences carry line numbers."""


def _construct_map(loader: Any, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            key = str(key)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: Any, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList()
    data.line = node.start_mark.line + 1
    data.item_lines = [n.start_mark.line + 1 for n in node.value]
    yield data
    data.extend(loader.construct_object(n, deep=True) for n in node.value)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
for _tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"):
    # Keep timestamps and binaries as the strings written in the file (JSON-friendly, like kustomize).
    _LineLoader.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node))


class YamlSyntaxError(ValueError):
    """A YAML file that does not parse; carries the 1-based line."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream, with line numbers; raises YamlSyntaxError."""
    try:
        return list(yaml.load_all(text, Loader=_LineLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise YamlSyntaxError(problem, line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), None) from None


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
    """Every YAML file under a folder, parsed, with parse errors kept apart."""

    root: Path
    docs: dict[str, list[SourceDoc]] = field(default_factory=dict)
    errors: dict[str, YamlSyntaxError] = field(default_factory=dict)
    _by_object: dict[tuple[str, str], list[SourceDoc]] = field(default_factory=dict)

    def add_file(self, path: Path) -> None:
        """Parse one file and index its documents."""
        rel = path.relative_to(self.root).as_posix()
        try:
            parsed = load_all(path.read_text(encoding="utf-8"))
        except YamlSyntaxError as exc:
            self.errors[rel] = exc
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.errors[rel] = YamlSyntaxError(f"cannot read: {exc}", None)
            return
        docs = [SourceDoc(rel, i, d) for i, d in enumerate(parsed) if d is not None]
        self.docs[rel] = docs
        for doc in docs:
            if doc.kind and doc.name:
                self._by_object.setdefault((doc.kind, doc.name), []).append(doc)

    def find(
        self, kind: str, name: str, namespace: str = "", under: tuple[str, ...] = ()
    ) -> SourceDoc | None:
        """The source document of an object, preferring one in ``under`` folders and a namespace match."""
        candidates = self._by_object.get((kind, name), [])
        if not candidates:
            return None

        def score(doc: SourceDoc) -> tuple[int, int]:
            inside = any(doc.file.startswith(u.rstrip("/") + "/") for u in under)
            return (int(inside), int(bool(namespace) and doc.namespace == namespace))

        return max(candidates, key=score)

    def files(self) -> list[str]:
        """Every YAML file read, parsed or not, sorted."""
        return sorted({*self.docs, *self.errors})


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
    """Parse every YAML file under ``folders``; file names in the result are relative to ``root``."""
    sources = Sources(root)
    for folder in folders:
        if folder.is_file():
            sources.add_file(folder)
        elif folder.is_dir():
            for path in yaml_files(folder):
                sources.add_file(path)
    return sources
