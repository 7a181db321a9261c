"""``group_vars/`` and ``host_vars/`` beside the inventory file, found and read as Ansible does.

For a group or host NAME, Ansible takes the first of ``NAME``, ``NAME.yml``, ``NAME.yaml`` and
``NAME.json`` that exists; a folder is read whole (its files in name order, subfolders too,
skipping hidden files, backups ending in ``~`` and other extensions); a later file's variable
replaces an earlier one's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fluxops.inventory import datafile
from fluxops.inventory.graph import Where

EXTENSIONS = ("", ".yml", ".yaml", ".json")

Layer = tuple[dict[str, Any], dict[str, Where]]


class VarsDirs:
    """The ``group_vars`` and ``host_vars`` folders of one inventory, each file read once."""

    def __init__(self, base: Path) -> None:
        self.base = base.resolve()
        self._folders: dict[str, Path | None] = {}
        self._layers: dict[tuple[str, str], Layer] = {}

    def group(self, name: str) -> Layer:
        """Variables of group ``name`` from ``group_vars/``."""
        return self._layer("group_vars", name)

    def host(self, name: str) -> Layer:
        """Variables of host ``name`` from ``host_vars/``."""
        return self._layer("host_vars", name)

    def _folder(self, subdir: str) -> Path | None:
        if subdir not in self._folders:
            folder = self.base / subdir
            self._folders[subdir] = folder if folder.is_dir() else None
        return self._folders[subdir]

    def _layer(self, subdir: str, name: str) -> Layer:
        key = (subdir, name)
        if key not in self._layers:
            values: dict[str, Any] = {}
            origins: dict[str, Where] = {}
            folder = self._folder(subdir)
            if folder is not None and not name.startswith(os.sep):
                for path in find(folder, name):
                    data = datafile.load(path)
                    if not data:
                        continue
                    if not isinstance(data, Mapping):
                        kind = type(data).__name__
                        raise Where(path, 1).error(
                            f"a vars file must hold a mapping of variable names to values, got {kind}"
                        )
                    for var, value in data.items():
                        line = data.line_of(var) if isinstance(data, datafile.LineMap) else None
                        if not isinstance(var, str):
                            raise Where(path, line).error(f"variable name {var!r} is not a string; quote it")
                        values[var] = value
                        origins[var] = Where(path, line)
            self._layers[key] = (values, origins)
        return self._layers[key]


def find(folder: Path, name: str) -> list[Path]:
    """The vars files of ``name`` in ``folder``: the first of NAME[.yml|.yaml|.json], a folder read whole."""
    for ext in EXTENSIONS:
        candidate = folder / f"{name}{ext}"
        if candidate.is_dir():
            return _folder_files(candidate)
        if candidate.exists():
            return [candidate]
    return []


def _folder_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(os.listdir(folder)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        path = folder / entry
        ext = os.path.splitext(entry)[1]
        if path.is_dir() and not ext:
            found.extend(_folder_files(path))
        elif path.is_file() and ext in EXTENSIONS:
            found.append(path)
    return found
