"""Flux's own kinds, from the CRDs of a Flux release shipped in ``schema_data/flux``.

``index.json`` names the release and, per API group, the file holding each kind's CRD (descriptions
removed); ``scripts/refresh_schemas.py`` writes both from Flux's CRD YAML. A kind's file is read the
first time an object of that kind is checked.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from fluxops.layout.crd_schema import CrdKind, parse_crd

DATA = ("schema_data", "flux")
INDEX = "index.json"


def _data_dir() -> Any:
    return resources.files("fluxops.layout").joinpath(*DATA)


@functools.cache
def index() -> dict[str, Any]:
    """The shipped index: ``release``, ``components`` and ``kinds`` (group -> kind -> file)."""
    data = json.loads(_data_dir().joinpath(INDEX).read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def release() -> str:
    """The Flux release the shipped schemas come from (e.g. ``v2.7.5``)."""
    return str(index().get("release", "unknown"))


def groups() -> frozenset[str]:
    """The API groups of the shipped Flux kinds."""
    return frozenset(index().get("kinds", {}))


def kinds(group: str) -> list[str]:
    """The kinds Flux defines in ``group`` (empty for a group that is not Flux's)."""
    return sorted(index().get("kinds", {}).get(group, {}))


@functools.cache
def crd(group: str, kind: str) -> CrdKind | None:
    """The CRD of a Flux kind at the shipped release (None for a kind Flux does not define)."""
    file = index().get("kinds", {}).get(group, {}).get(kind)
    if not isinstance(file, str):
        return None
    data = json.loads(_data_dir().joinpath(*file.split("/")).read_text(encoding="utf-8"))
    return parse_crd(data, f"Flux {release()}", identity=f"flux {release()} {kind}")
