"""Schema problems, and JSON Schema errors worded as kubeconform words them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fluxops.layout.findings import listing

if TYPE_CHECKING:
    from jsonschema import ValidationError

MAX_SHOWN = 60  # characters of a value quoted in a message


@dataclass(frozen=True)
class Problem:
    """One schema problem: a message and the key path it concerns."""

    message: str
    path: tuple[str | int, ...] = ()
    severity: str = "error"


def dotted(path: Iterable[str | int]) -> str:
    """``spec.values.0.name`` for a key path."""
    return ".".join(map(str, path))


def at(path: tuple[str | int, ...], message: str) -> Problem:
    """A problem whose message starts with the dotted key path (when there is one)."""
    where = dotted(path)
    return Problem(f"{where}: {message}" if where else message, path)


def problems_of(errors: Iterable[ValidationError]) -> list[Problem]:
    """Every validation error as problems, one per unknown field, sorted by key path."""
    found: dict[tuple[Any, ...], Problem] = {}
    for error in errors:
        for problem in _translate(error):
            found.setdefault((problem.path, problem.message), problem)
    return sorted(found.values(), key=lambda p: (tuple(map(str, p.path)), p.message))


def _translate(error: ValidationError) -> list[Problem]:
    path = tuple(p for p in error.absolute_path if isinstance(p, str | int))
    keyword = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = schema.get("properties") or {}
        patterns = schema.get("patternProperties") or {}
        extra = [k for k in instance if k not in known and not _matches_any(str(k), patterns)]
        # worded at the object (as kubeconform does), pointing at the unknown key's line
        return [
            Problem(at(path, f"additional properties '{k}' not allowed").message, (*path, k)) for k in extra
        ]
    if keyword == "required":
        missing = [r for r in error.validator_value if isinstance(instance, dict) and r not in instance]
        return [at(path, f"missing property '{r}'") for r in missing]
    if keyword == "type":
        return [at(path, f"got {_json_type(instance)}, want {_either(error.validator_value)}")]
    if keyword == "enum":
        choices = listing(_shown(v) for v in error.validator_value)
        return [at(path, f"value must be one of {choices}")]
    if keyword in ("oneOf", "anyOf"):
        types = _branch_types(error.validator_value)
        if types:
            return [at(path, f"got {_json_type(instance)}, want {_either(types)}")]
        if error.context:
            from jsonschema.exceptions import best_match

            return _translate(best_match(error.context))
    return [at(path, _short(error.message))]


def _matches_any(key: str, patterns: dict[str, Any]) -> bool:
    return any(re.search(p, key) for p in patterns)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _either(types: Any) -> str:
    names = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    return " or ".join(dict.fromkeys(names)) or "null"


def _branch_types(branches: Any) -> list[str]:
    """The types of oneOf/anyOf branches that only name a type (int-or-string, quantities)."""
    types: list[str] = []
    for branch in branches if isinstance(branches, list) else []:
        if not isinstance(branch, dict) or set(branch) != {"type"}:
            return []
        value = branch["type"]
        types.extend([value] if isinstance(value, str) else value)
    return types


def _shown(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else _short(repr(value))


def _short(text: str) -> str:
    return text if len(text) <= MAX_SHOWN * 3 else text[: MAX_SHOWN * 3 - 3] + "..."
