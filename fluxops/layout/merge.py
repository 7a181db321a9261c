"""The deep merge Flux uses for chart values and source-watcher for merged YAML files."""

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
