"""Which kind of inventory a file is, decided as Ansible decides it, and what fluxops refuses.

Ansible tries its inventory plugins in order: an executable file is a dynamic inventory script; a
``.yml``/``.yaml`` file with a top-level ``plugin:`` key configures an inventory plugin; a file
named ``.yml``, ``.yaml``, ``.json`` or without extension is tried as a YAML inventory; anything
but ``.toml`` is then tried as INI. fluxops reads the static kinds (YAML, JSON, INI) and refuses
scripts, plugins, TOML and folders, each with its own message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from fluxops.errors import InventoryError
from fluxops.inventory import datafile
from fluxops.inventory.graph import Graph, Where
from fluxops.inventory.ini_format import IniInventory
from fluxops.inventory.yaml_format import YamlInventory

YAML_EXTENSIONS = ("", ".yml", ".yaml", ".json")
EXPORT_HINT = "`ansible-inventory -i {path} --list --yaml > hosts.yaml` writes it as a static YAML inventory"


def read(path: Path) -> Graph:
    """The groups and hosts of the inventory file at ``path`` (not yet the group_vars/host_vars)."""
    if path.is_dir():
        raise InventoryError(
            "is a folder; fluxops reads one inventory file (Ansible would merge every file in it): "
            "point fluxops.inventory at the file",
            path=str(path),
        )
    if not path.exists():
        raise InventoryError(
            "inventory file not found; set fluxops.inventory in invoke.yaml or INVOKE_FLUXOPS_INVENTORY",
            path=str(path),
        )
    text = datafile.read_text(path)
    if text.startswith("#!") and os.access(path, os.X_OK):
        raise InventoryError(
            "is an executable script (a dynamic inventory); fluxops does not run inventory scripts: "
            + EXPORT_HINT.format(path=path),
            path=str(path),
            line=1,
        )
    ext = path.suffix
    if ext == ".toml":
        raise InventoryError(
            "TOML inventories are not supported yet; " + EXPORT_HINT.format(path=path), path=str(path)
        )
    graph = Graph(path)
    yaml_error: InventoryError | None = None
    if ext in YAML_EXTENSIONS:
        try:
            data = datafile.parse(text, path)
        except InventoryError as exc:
            yaml_error = exc
        else:
            if isinstance(data, Mapping) and data.get("plugin"):
                line = data.line_of("plugin") if isinstance(data, datafile.LineMap) else 1
                raise Where(path, line).error(
                    f"configures the inventory plugin {data['plugin']!r} (a top-level 'plugin' key); "
                    "fluxops reads static inventories only: " + EXPORT_HINT.format(path=path)
                )
            if isinstance(data, Mapping) and data:
                YamlInventory(graph).parse(data)
                graph.reconcile()
                return graph
            if data:
                yaml_error = Where(path, 1).error(
                    f"a YAML inventory is a mapping of groups (usually `all:`), got {type(data).__name__}"
                )
    try:
        IniInventory(graph).parse(text)  # Ansible's next try, for any file but .toml
    except InventoryError as ini_error:
        if yaml_error is None:
            raise
        if ext:
            raise yaml_error from None  # named as YAML: its YAML problem is the one to fix
        raise InventoryError(
            f"neither a YAML inventory ({_bare(yaml_error)}) nor an INI one ({_bare(ini_error)})",
            path=str(path),
            line=yaml_error.line,
        ) from None
    graph.reconcile()
    return graph


def _bare(error: InventoryError) -> str:
    """The error's message with its line but without the file name."""
    text = str(error)
    prefix = f"{error.path}:{error.line}: " if error.line is not None else f"{error.path}: "
    text = text.removeprefix(prefix)
    return f"line {error.line}: {text}" if error.line is not None else text
