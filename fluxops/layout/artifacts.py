"""ExternalArtifacts an ArtifactGenerator composes, laid out on disk so a Kustomization can build from one.

Flux 2.7's source-watcher (v2.0, ``internal/builder``) stages each of a generator's ``artifacts``
by applying its ``copy`` operations in order, from the sources it names by alias, into an empty
folder that becomes the ExternalArtifact:

- ``from: "@alias/pattern"``, ``to: "@artifact/dest"``; ``strategy`` ``Overwrite`` (default) or
  ``Merge`` (a YAML file copied onto an existing one is deep-merged into it, Helm-values style);
- a pattern without ``* ? [ ]`` is a file or folder, copied as ``cp`` would: a folder becomes
  ``dest/<its name>/``; a file becomes ``dest/<its name>`` when ``to`` ends in ``/`` or names a
  folder already staged, else ``dest``;
- a glob is matched with Go's ``fs.Glob`` (``*`` stays within one path segment, so ``dir/**``
  means the entries directly in ``dir``); each match keeps its path below ``dir`` for patterns
  ending in ``/**``, its full path otherwise; a folder match is copied whole;
- ``exclude`` patterns (doublestar syntax, ``**`` spanning folders) drop glob matches by their path
  in the source, and files of copied folders by their path inside that folder;
- no match, every match excluded, a missing path or an unknown alias fails the generator.

What source-controller leaves out of a GitRepository artifact by default (``.git/``, CI files; see
:mod:`fluxops.layout.flux_generator`) is not there to copy; ``.sourceignore`` is not applied.

Offline the staged files are symbolic links to the source files (merged files are written), in a
temporary folder: a Kustomization whose source is the artifact builds there, and its
``../`` references resolve inside the artifact as in Flux.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from fluxops.layout.flux_generator import IGNORED_FILES, IGNORED_FOLDERS
from fluxops.layout.merge import merge_maps

GLOB_CHARS = "*?[]"
ARTIFACT_PREFIX = "@artifact/"
MERGE = "Merge"


class CopyError(ValueError):
    """A copy operation source-watcher refuses (the generator reports it and produces nothing)."""


@dataclass
class Staged:
    """One artifact on disk: its folder, and for each staged folder the source folder it mirrors."""

    folder: Path
    origins: dict[Path, Path] = field(default_factory=dict)


class ArtifactStore:
    """Staged artifacts of one load, in one temporary folder removed by :meth:`close`."""

    def __init__(self) -> None:
        self._top: Path | None = None
        self.staged: dict[tuple[str, str, str], Staged] = {}
        self.labels: dict[Path, str] = {}

    def stage(self, key: tuple[str, str, str], spec: dict[str, Any], sources: dict[str, Path]) -> Staged:
        """Stage the artifact ``spec`` (a generator's ``artifacts`` entry) as ``key`` (cluster, namespace,
        name): each cluster's generators stage their own.

        ``sources`` maps each alias to its folder; raises CopyError as source-watcher would fail.
        """
        if key in self.staged:
            return self.staged[key]
        if self._top is None:
            self._top = Path(tempfile.mkdtemp(prefix="fluxops-artifacts-")).resolve()
        folder = self._top / str(len(self.staged))
        folder.mkdir()
        staged = Staged(folder)
        copies = spec.get("copy") if isinstance(spec.get("copy"), list) else []
        for i, op in enumerate(copies):
            if not isinstance(op, dict):
                raise CopyError(f"copy[{i}] is not a mapping")
            try:
                _apply(op, sources, staged)
            except CopyError as exc:
                where = f"from '{op.get('from')}' to '{op.get('to')}'"
                raise CopyError(f"failed to apply copy operation {where}: {exc}") from None
        self.staged[key] = staged
        self.labels[folder] = f"ExternalArtifact {key[1]}/{key[2]}"
        return staged

    def origin(self, path: Path) -> Path | str | None:
        """What a staged path stands for: the source path it mirrors, else ``ExternalArtifact ns/name:/sub``
        (None for a path outside every artifact).
        """
        path = Path(os.path.abspath(path))
        for staged in self.staged.values():
            if not path.is_relative_to(staged.folder):
                continue
            for dest in sorted(staged.origins, key=lambda d: len(d.parts), reverse=True):
                if path.is_relative_to(dest):
                    return staged.origins[dest] / path.relative_to(dest)
            below = path.relative_to(staged.folder).as_posix()
            return f"{self.labels[staged.folder]}:/{'' if below == '.' else below}"
        return None

    def close(self) -> None:
        """Remove every staged artifact."""
        if self._top is not None:
            shutil.rmtree(self._top, ignore_errors=True)
            self._top = None


def _apply(op: dict[str, Any], sources: dict[str, Path], staged: Staged) -> None:
    source, to = str(op.get("from", "")), str(op.get("to", ""))
    if not source.startswith("@"):
        raise CopyError(f"invalid copy source '{source}': source must start with '@'")
    alias, sep, pattern = source[1:].partition("/")
    if not sep:
        raise CopyError(f"invalid copy source '{source}': source format must be '@alias/pattern'")
    if not to.startswith(ARTIFACT_PREFIX):
        raise CopyError(f"invalid copy destination '{to}': destination must start with '@artifact/'")
    dest = to[len(ARTIFACT_PREFIX) :]
    if alias not in sources:
        raise CopyError(f"source alias '{alias}' not found")
    excludes = [str(p) for p in op.get("exclude") or []]
    for exclude in excludes:
        _doublestar(exclude)  # raises CopyError when invalid
    merge = op.get("strategy") == MERGE
    src_root = sources[alias]
    if not any(c in pattern for c in GLOB_CHARS):
        src = _clean(pattern)
        if src == ".." or src.startswith("../"):
            raise CopyError(f"source '{src}' is outside the source")
        _copy_single(src_root, src, staged, dest, to.endswith("/"), excludes, merge)
        return
    prefix = pattern[: -len("/**")] if pattern.endswith("/**") else ""
    if prefix and not any(c in prefix for c in GLOB_CHARS):
        staged.origins.setdefault(_staged_path(staged, dest), (src_root / prefix).resolve())
    matches = go_glob(src_root, pattern)
    if not matches:
        raise CopyError(f"no files match pattern '{pattern}' in source '{alias}'")
    kept = [m for m in matches if not excluded(m, excludes)]
    if not kept:
        raise CopyError(f"all files matching pattern '{pattern}' in source '{alias}' were excluded")
    for match in kept:
        _copy(src_root, match, staged, _glob_destination(pattern, match, dest), excludes, merge)


def _clean(path: str) -> str:
    """Go's filepath.Clean of a relative path ("" and "." become ".")."""
    cleaned = os.path.normpath(path) if path else "."
    return cleaned.lstrip("/") or "."


def _join(*parts: str) -> str:
    """Go's filepath.Join: empty parts skipped, the result cleaned."""
    kept = [p for p in parts if p]
    return _clean("/".join(kept)) if kept else ""


def _copy_single(
    src_root: Path, src: str, staged: Staged, dest: str, to_folder: bool, excludes: list[str], merge: bool
) -> None:
    path = src_root / src
    if not path.exists():
        raise CopyError(f"source '{src}' does not exist")
    if path.is_dir():
        _copy(src_root, src, staged, _join(dest, Path(src).name or "."), excludes, merge)
        return
    if excluded(src, excludes):
        return
    name = Path(src).name
    final = _join(dest, name) if to_folder or _staged_path(staged, dest).is_dir() else dest
    _copy(src_root, src, staged, final, excludes, merge)


def _staged_path(staged: Staged, dest: str) -> Path:
    return staged.folder / dest if dest and dest != "." else staged.folder


def _glob_destination(pattern: str, match: str, dest: str) -> str:
    """Where a glob match goes: below ``dest``, without the ``dir/`` of a ``dir/**`` pattern."""
    if pattern.endswith("/**"):
        prefix = pattern[: -len("/**")] + "/"
        if match.startswith(prefix):
            return _join(dest, match[len(prefix) :])
    return _join(dest, match)


def _copy(src_root: Path, src: str, staged: Staged, dest: str, excludes: list[str], merge: bool) -> None:
    """Copy the file or folder ``src`` (relative to ``src_root``) to ``dest`` in the artifact."""
    path = src_root / src
    target = _staged_path(staged, dest)
    if path.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        staged.origins[target] = path.resolve()
        for current, dirs, files in os.walk(path):
            here = Path(current)
            rel_dir = here.relative_to(path)
            for name in sorted(dirs):
                if name in IGNORED_FOLDERS or excluded((rel_dir / name).as_posix(), excludes):
                    dirs.remove(name)
                else:
                    (target / rel_dir / name).mkdir(parents=True, exist_ok=True)
            for name in sorted(files):
                if name not in IGNORED_FILES and not excluded((rel_dir / name).as_posix(), excludes):
                    _place(here / name, target / rel_dir / name, merge=False)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    _place(path, target, merge)


def _place(source: Path, target: Path, merge: bool) -> None:
    """A link to ``source`` at ``target`` (replacing what is there), or the YAML merge of both."""
    if merge and target.is_file():
        merged = merge_maps(_yaml_map(target), _yaml_map(source))
        target.unlink()
        target.write_text(yaml.safe_dump(merged, sort_keys=True), encoding="utf-8")
        return
    if target.is_symlink() or target.is_file():
        target.unlink()
    os.symlink(source.resolve(), target)


def _yaml_map(path: Path) -> dict[str, Any]:
    """Every document of a YAML file merged into one mapping (as source-watcher's loadYAML)."""
    out: dict[str, Any] = {}
    try:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict):
                out = merge_maps(out, doc)
            elif doc is not None:
                raise CopyError(f"cannot merge {path.name}: a document is not a mapping")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CopyError(f"cannot merge {path.name}: {exc}") from None
    return out


def go_glob(root: Path, pattern: str) -> list[str]:
    """Go's ``fs.Glob`` over ``root``: matches as slash paths, each segment matched by ``path.Match``."""
    if not any(c in pattern for c in GLOB_CHARS):
        return [pattern] if (root / pattern).exists() else []
    head, _, tail = pattern.rpartition("/")
    if any(c in head for c in GLOB_CHARS):
        folders = go_glob(root, head)
    else:
        folders = [head] if (root / head if head else root).is_dir() else []
    segment = _go_segment(tail)
    out: list[str] = []
    for folder in folders:
        base = root / folder if folder else root
        if not base.is_dir():
            continue
        for name in sorted(os.listdir(base)):
            if name in IGNORED_FOLDERS or name in IGNORED_FILES:
                continue  # not in the GitRepository artifact
            if segment.fullmatch(name):
                out.append(f"{folder}/{name}" if folder else name)
    return out


@lru_cache(maxsize=256)
def _go_segment(pattern: str) -> re.Pattern[str]:
    """Go's ``path.Match`` for one segment: ``*``, ``?``, ``[class]`` (``^`` negates), ``\\`` escapes."""
    return re.compile(_translate(pattern, star="[^/]*", double=False))


@lru_cache(maxsize=256)
def _doublestar(pattern: str) -> re.Pattern[str]:
    """doublestar's ``Match``: Go's syntax plus ``**`` segments (any depth) and ``{a,b}`` alternatives."""
    try:
        return re.compile(_translate(pattern, star="[^/]*", double=True))
    except (re.error, CopyError):
        raise CopyError(f"invalid exclude pattern '{pattern}'") from None


def _translate(pattern: str, *, star: str, double: bool) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        at_segment_start = i == 0 or pattern[i - 1] == "/"
        if double and c == "*" and pattern.startswith("**", i) and at_segment_start:
            end = i + 2
            if end == n:
                out.append(".*")
                i = end
                continue
            if pattern[end] == "/":
                out.append("(?:.*/)?")
                i = end + 1
                continue
        if c == "*":
            out.append(star)
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            close = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("^", "!") else i + 1)
            if close < 0:
                raise CopyError(f"syntax error in pattern '{pattern}'")
            body = pattern[i + 1 : close]
            if body[:1] in ("^", "!"):
                body = "^" + body[1:]
            out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
            i = close
        elif double and c == "{":
            close = pattern.find("}", i)
            if close < 0:
                raise CopyError(f"syntax error in pattern '{pattern}'")
            options = pattern[i + 1 : close].split(",")
            out.append("(?:" + "|".join(_translate(o, star=star, double=True) for o in options) + ")")
            i = close
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def excluded(path: str, patterns: list[str]) -> bool:
    """True when ``path`` (a slash path) matches one of the doublestar ``patterns``."""
    return any(_doublestar(p).fullmatch(path) for p in patterns)
