"""Object schemas: Flux kinds against cloudcoil's Flux models, core kinds against Kubernetes schemas.

Results are cached per object content, so a cached run imports neither library.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxops.layout.model import FLUX_GROUP_SUFFIX, group_of

KUBERNETES_VERSION = "1.33"
CACHE_FORMAT = "1"
FLUX_AREAS = {
    "kustomize.toolkit.fluxcd.io": "kustomize",
    "helm.toolkit.fluxcd.io": "helm",
    "source.toolkit.fluxcd.io": "source",
    "notification.toolkit.fluxcd.io": "notification",
    "image.toolkit.fluxcd.io": "image",
}
FLUX_VERSIONS = {
    "kustomize": ("v1", "v1beta2", "v1beta1"),
    "helm": ("v2", "v2beta2", "v2beta1"),
    "source": ("v1", "v1beta2", "v1beta1"),
    "notification": ("v1", "v1beta3", "v1beta2", "v1beta1"),
    "image": ("v1beta2", "v1beta1"),
}


@dataclass(frozen=True)
class Problem:
    """One schema problem: a message and the key path it concerns."""

    message: str
    path: tuple[str | int, ...] = ()
    severity: str = "error"


class SchemaChecker:
    """Checks objects; ``check`` returns problems, or None for a kind no schema here knows."""

    def __init__(self, cache_file: Path | None = None) -> None:
        self.cache_file = cache_file
        self._cache: dict[str, list[list[Any]] | None] = {}
        self._dirty = False
        self._lock = threading.Lock()
        if cache_file is not None and cache_file.is_file():
            try:
                self._cache = json.loads(cache_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._cache = {}

    def check(self, obj: dict[str, Any]) -> list[Problem] | None:
        """Schema problems of one object (None: no schema known for its kind)."""
        key = hashlib.sha256(
            (CACHE_FORMAT + json.dumps(obj, sort_keys=True, default=str)).encode()
        ).hexdigest()
        with self._lock:
            if key in self._cache:
                cached = self._cache[key]
                return None if cached is None else [Problem(m, tuple(p), s) for m, p, s in cached]
        problems = _check(obj)
        with self._lock:
            self._cache[key] = (
                None if problems is None else [[p.message, list(p.path), p.severity] for p in problems]
            )
            self._dirty = True
        return problems

    def save(self) -> None:
        """Write the cache back if anything new was checked."""
        if self.cache_file is None or not self._dirty:
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._cache), encoding="utf-8")
            tmp.replace(self.cache_file)
        except OSError:
            pass


def _check(obj: dict[str, Any]) -> list[Problem] | None:
    api_version = str(obj.get("apiVersion", ""))
    kind = str(obj.get("kind", ""))
    if not api_version or not kind:
        return [Problem("object has no apiVersion or kind")]
    body = {k: v for k, v in obj.items() if k != "sops"}
    group = group_of(api_version)
    if group.endswith(FLUX_GROUP_SUFFIX):
        return check_flux(body)
    return check_core(body)


def flux_model(group: str, version: str, kind: str) -> type | None:
    """cloudcoil's model class for a Flux kind at a version, if that version exists."""
    area = FLUX_AREAS.get(group)
    if area is None:
        return None
    try:
        module = importlib.import_module(f"cloudcoil.models.fluxcd.{area}.{version}")
    except ImportError:
        return None
    model = getattr(module, kind, None)
    return model if isinstance(model, type) else None


def preferred_version(group: str, kind: str) -> str | None:
    """The newest served version of a Flux kind (importing as few model modules as possible)."""
    area = FLUX_AREAS.get(group)
    return next(
        (v for v in FLUX_VERSIONS.get(area or "", ()) if flux_model(group, v, kind) is not None), None
    )


def check_flux(obj: dict[str, Any]) -> list[Problem]:
    """A Flux object against its model: types, enums, patterns, required and unknown fields."""
    import pydantic

    api_version = str(obj["apiVersion"])
    group, _, version = api_version.partition("/")
    kind = str(obj["kind"])
    preferred = preferred_version(group, kind)
    if preferred is None:
        return [Problem(f"{kind} is not a kind of {group}", ("kind",))]
    model = flux_model(group, version, kind)
    if model is None:
        return [
            Problem(
                f"apiVersion {api_version} is not served for {kind} (use {group}/{preferred})",
                ("apiVersion",),
            )
        ]
    problems: list[Problem] = []
    if version != preferred:
        problems.append(
            Problem(
                f"{api_version} is deprecated for {kind}; use {group}/{preferred}", ("apiVersion",), "warning"
            )
        )
    try:
        model.model_validate(obj)  # type: ignore[attr-defined]
    except pydantic.ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            problems.append(Problem(f"{'.'.join(map(str, loc)) or kind}: {err['msg']}", loc))
    for path in unknown_fields(model, obj, ()):
        problems.append(Problem(f"{'.'.join(map(str, path))}: unknown field", path))
    return problems


def _models_in(annotation: Any) -> list[tuple[str, type]]:
    """The pydantic models an annotation holds, as ("one"|"list"|"dict", model)."""
    import pydantic

    found: list[tuple[str, type]] = []
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [("one", annotation)]
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            found.extend(_models_in(arg))
    elif origin in (list, typing.List) and args:  # noqa: UP006
        found.extend(("list", m) for _, m in _models_in(args[0]))
    elif origin in (dict, typing.Dict) and len(args) == 2:  # noqa: UP006
        found.extend(("dict", m) for _, m in _models_in(args[1]))
    return found


def unknown_fields(model: type, data: Any, path: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """Keys in ``data`` that ``model`` does not define (the models would silently drop them)."""
    if not isinstance(data, dict):
        return []
    fields = model.model_fields  # type: ignore[attr-defined]
    by_key = {}
    for name, info in fields.items():
        by_key[name] = info
        if info.alias:
            by_key[info.alias] = info
    found: list[tuple[str | int, ...]] = []
    for key, value in data.items():
        info = by_key.get(key)
        if info is None:
            found.append((*path, key))
            continue
        if key == "status":
            continue
        for shape, sub in _models_in(info.annotation)[:1]:
            if shape == "one":
                found.extend(unknown_fields(sub, value, (*path, key)))
            elif shape == "list" and isinstance(value, list):
                for i, item in enumerate(value):
                    found.extend(unknown_fields(sub, item, (*path, key, i)))
            elif shape == "dict" and isinstance(value, dict):
                for k, item in value.items():
                    found.extend(unknown_fields(sub, item, (*path, key, k)))
    return found


def check_core(obj: dict[str, Any]) -> list[Problem] | None:
    """A built-in kind against the Kubernetes schemas (strict: unknown fields are errors)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return None
    except kubernetes_validate.ValidationError as exc:
        path = tuple(p for p in exc.path if isinstance(p, str | int))
        where = ".".join(map(str, path))
        return [Problem(f"{where + ': ' if where else ''}{exc.message}", path)]
    except kubernetes_validate.InvalidSchemaError as exc:
        return [Problem(f"schema error: {exc}")]
    return []


BUILTIN_GROUP_SUFFIXES = (".k8s.io",)
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "extensions",
    "apiextensions.k8s.io",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "scheduling.k8s.io",
    "node.k8s.io",
    "certificates.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "apiregistration.k8s.io",
    "helm.cattle.io",
    "k3s.cattle.io",
}


def is_builtin_group(group: str) -> bool:
    """Groups a k3s cluster serves without any CRD from the tree (Kubernetes' own and k3s's)."""
    return group in BUILTIN_GROUPS or group.endswith(BUILTIN_GROUP_SUFFIXES)
