"""The fields of a Flux Kustomization a build reads, and the problems a build reports about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """Why a Flux build fails (or what it does differently); ``keys`` locate it in the Kustomization."""

    message: str
    keys: tuple[Any, ...] = ()
    severity: str = ERROR


def spec_of(ks: dict[str, Any]) -> dict[str, Any]:
    """``spec`` of a Kustomization (empty when missing)."""
    spec = ks.get("spec")
    return spec if isinstance(spec, dict) else {}


def text_field(ks: dict[str, Any], name: str) -> str:
    """A string field of the spec; empty when unset (the API omits empty strings)."""
    value = spec_of(ks).get(name)
    return value if isinstance(value, str) else ""


def list_field(ks: dict[str, Any], name: str) -> list[Any]:
    """A list field of the spec; empty when unset."""
    value = spec_of(ks).get(name)
    return value if isinstance(value, list) else []


def namespace_of(ks: dict[str, Any]) -> str:
    """The Kustomization's namespace (where Flux looks up substituteFrom objects)."""
    md = ks.get("metadata")
    return str(md.get("namespace") or "") if isinstance(md, dict) else ""


def label_of(obj: dict[str, Any]) -> str:
    """``Kind/name`` of an object, as Flux names one in its messages."""
    md = obj.get("metadata")
    name = md.get("name", "") if isinstance(md, dict) else ""
    return f"{obj.get('kind', '')}/{name}"
