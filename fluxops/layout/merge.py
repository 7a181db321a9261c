"""Nested values: the deep merge Flux uses for chart values and merged YAML files, and a path look-up."""

from __future__ import annotations

from typing import Any


def merge_maps(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merged key by key; anything else (lists included) replaced by ``over``'s.

    As helm-controller's MergeMaps (values, then valuesFrom) and source-watcher's Merge strategy do.
    """
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_maps(out[key], value)
        else:
            out[key] = value
    return out


def dig(node: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` (mapping keys and list indexes) inside ``node``, or None when absent."""
    for key in path:
        inside = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if not (inside or (isinstance(node, dict) and key in node)):
            return None
        node = node[key]
    return node
