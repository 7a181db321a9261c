"""The API server's admission of an object: metadata, then its kind's schema, in the API server's words.

Schemas come from :mod:`fluxops.layout.schemas` (Kubernetes' own kinds for the node's release, and
the openAPIV3Schema of every CRD the node holds, Flux's included). Its problems are reworded the way
the API server reports them to a server-side apply:

- a field the schema does not declare: the typed patch fails (BadRequest),
  ``failed to create typed patch object (ns/name; group/v1, Kind=X): .spec.foo: field not declared
  in schema``;
- anything else: ``X.group "name" is invalid: spec.x: Required value`` (Invalid), several errors in
  brackets, each a ``field.Error``: ``Required value``, ``Invalid value: "string": spec.x in body
  must be of type boolean: "string"``, ``Unsupported value: "c": supported values: "a", "b"``.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

from fluxops.errors import FluxopsError
from fluxops.layout.schemas import Catalog, SchemaChecker
from fluxops.sim.kinds import CRD_GROUP, Kind, release_of
from fluxops.sim.store import State

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_HINT = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_HINT = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_UNDECLARED = re.compile(r"^additional properties '(.+)' not allowed$")
_MISSING = re.compile(r"^missing property '(.+)'$")
_TYPE = re.compile(r"^got (\w+), want (.+)$")
_ENUM = re.compile(r"^value must be one of (.+)$")


class ApiError(FluxopsError):
    """An API server error: its message, reason (``NotFound``, ``Invalid``, ``BadRequest`` ...; empty for a
    client-side error such as a kind with no match) and HTTP code."""

    def __init__(self, message: str, reason: str = "", code: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.code = code

    @property
    def not_found(self) -> bool:
        """True for a 404."""
        return self.reason == "NotFound"


def not_found(resource: str, name: str) -> ApiError:
    """``resource "name" not found`` (404), e.g. ``namespaces "x" not found``."""
    return ApiError(f'{resource} "{name}" not found', "NotFound", 404)


def qualified(kind: Kind) -> str:
    """``Kind.group`` (``Kind`` for the core group), as the API server names a kind in errors."""
    return f"{kind.kind}.{kind.group}" if kind.group else kind.kind


def invalid(kind: Kind, name: str, errors: list[str]) -> ApiError:
    """The 422 Invalid error of an object with ``errors`` (field.Error strings)."""
    body = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return ApiError(f'{qualified(kind)} "{name}" is invalid: {body}', "Invalid", 422)


def field_path(path: tuple[str | int, ...]) -> str:
    """``spec.ports[0].port`` for a key path."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _value_at(obj: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        try:
            obj = obj[part]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _shown(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def check_metadata(obj: dict[str, Any], kind: Kind) -> list[str]:
    """``metadata.name`` (and ``namespace``) as the API server validates them."""
    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = md.get("name")
    if not name:
        return ["metadata.name: Required value: name or generateName is required"]
    errors = []
    pattern, hint, limit = (
        (DNS_LABEL, LABEL_HINT, 63)
        if kind.kind == "Namespace" and not kind.group
        else (DNS_SUBDOMAIN, SUBDOMAIN_HINT, 253)
    )
    if not isinstance(name, str) or len(name) > limit or not pattern.match(name):
        errors.append(f"metadata.name: Invalid value: {_shown(name)}: {hint}")
    return errors


class Validator:
    """Checks objects against the node's schemas; keeps one catalog per set of CRDs."""

    def __init__(self, cache_file: Path | None = None) -> None:
        self.checker = SchemaChecker(cache_file)
        self._catalogs: dict[tuple[str, tuple[tuple[str, str], ...]], Catalog] = {}
        self._lock = threading.Lock()

    def catalog(self, state: State) -> Catalog:
        """The node's catalog: its Kubernetes release and the CRDs it holds now."""
        crds = state.list(CRD_GROUP, "CustomResourceDefinition")
        release = release_of(state)
        key = (
            release,
            tuple((c["metadata"]["name"], str(c["metadata"].get("resourceVersion"))) for c in crds),
        )
        with self._lock:
            found = self._catalogs.get(key)
            if found is None:
                found = self.checker.catalog()
                found.release = release
                for crd in crds:
                    found.add_crd(crd, f"CustomResourceDefinition {crd['metadata']['name']}")
                self._catalogs = {key: found}
        return found

    def check(self, state: State, obj: dict[str, Any], kind: Kind) -> None:
        """Raise the API server's error for ``obj`` of ``kind`` if its metadata or schema is wrong."""
        name = str((obj.get("metadata") or {}).get("name", ""))
        errors = check_metadata(obj, kind)
        if errors:
            raise invalid(kind, name, errors)
        body = {k: v for k, v in obj.items() if k not in ("status", "sops")}
        problems = self.checker.check(body, self.catalog(state)) or []
        undeclared, field_errors = [], []
        for problem in problems:
            if problem.severity != "error":
                continue
            where = field_path(problem.path)
            text = problem.message
            for depth in (len(problem.path), len(problem.path) - 1):  # "spec: additional properties ..."
                text = text.removeprefix(f"{'.'.join(map(str, problem.path[:depth]))}: ")
            if _UNDECLARED.match(text):
                undeclared.append(f".{where}: field not declared in schema")
            else:
                field_errors.append(_field_error(body, problem.path, where, text))
        if undeclared:
            namespace = (obj.get("metadata") or {}).get("namespace") or ""
            gv = obj.get("apiVersion", "")
            gv = gv if "/" in gv else f"/{gv}"
            detail = undeclared[0] if len(undeclared) == 1 else "errors:\n  " + "\n  ".join(undeclared)
            raise ApiError(
                f"failed to create typed patch object ({namespace}/{name}; {gv}, Kind={kind.kind}): {detail}",
                "BadRequest",
                400,
            )
        if field_errors:
            raise invalid(kind, name, field_errors)


def _field_error(body: dict[str, Any], path: tuple[str | int, ...], where: str, text: str) -> str:
    """One schema problem as the API server's field.Error."""
    missing = _MISSING.match(text)
    if missing:
        return f"{field_path((*path, missing.group(1)))}: Required value"
    value = _value_at(body, path)
    typed = _TYPE.match(text)
    if typed:
        actual, wanted = typed.group(1), typed.group(2).replace(" or ", ",")
        return f'{where}: Invalid value: "{actual}": {where} in body must be of type {wanted}: "{actual}"'
    enum = _ENUM.match(text)
    if enum:
        return f"{where}: Unsupported value: {_shown(value)}: supported values: {enum.group(1)}"
    return f"{where or '<root>'}: Invalid value: {_shown(value)}: {text}"
