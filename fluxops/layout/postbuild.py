"""What kustomize-controller does to the built objects: ``postBuild`` substitution, ``commonMetadata``.

Flux 2.7 (kustomize-controller v1.7 ``build()``; fluxcd/pkg kustomize/kustomize_varsub.go v1.24),
for each object kustomize built, in order:

- an object labelled or annotated ``kustomize.toolkit.fluxcd.io/substitute: disabled`` is left alone;
- otherwise the variables are loaded: each ``substituteFrom`` entry in order (a ConfigMap's ``data``,
  a Secret's decoded ``data``; a later entry overrides an earlier one), then ``substitute`` on top;
  newlines are removed from every value. A missing object fails the Kustomization unless its entry
  is ``optional``; an invalid variable name fails it too;
- when at least one variable is defined, envsubst runs over the object's YAML (see
  :mod:`fluxops.layout.substitute`) and the result is read back as YAML (so ``replicas: ${n}`` becomes
  a number).

``commonMetadata`` labels and annotations are set on every object afterwards, when Flux applies
them (``ssautil.SetCommonMetadata``): existing keys are overwritten, nothing is substituted in them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from fluxops.layout.flux_spec import Problem, label_of, namespace_of, spec_of
from fluxops.layout.kustomize import OutputLoader
from fluxops.layout.substitute import UNKNOWN, VAR_NAME, SubstitutionError, invalid_names, substitute

DISABLE_KEY = "kustomize.toolkit.fluxcd.io/substitute"
DISABLED = "disabled"

# Finds a ConfigMap or Secret by (kind, name, namespace); None when the cluster would not have it.
Lookup = Callable[[str, str, str], dict[str, Any] | None]


@dataclass(frozen=True)
class MissingSource:
    """A ``substituteFrom`` object not found (Flux fails the Kustomization unless it is optional)."""

    index: int
    kind: str
    name: str
    namespace: str


@dataclass
class PostBuildResult:
    """The objects as Flux applies them, with what stopped the build."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    missing: list[MissingSource] = field(default_factory=list)


def opted_out(obj: dict[str, Any]) -> bool:
    """True for an object labelled or annotated ``kustomize.toolkit.fluxcd.io/substitute: disabled``."""
    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return any(
        isinstance(md.get(k), dict) and md[k].get(DISABLE_KEY) == DISABLED for k in ("labels", "annotations")
    )


def values_of(obj: dict[str, Any]) -> dict[str, str]:
    """The variables a ConfigMap or Secret defines (a SOPS-encrypted Secret's are :data:`UNKNOWN`)."""
    if obj.get("kind") == "ConfigMap":
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        return {str(k): _scalar(v) for k, v in data.items()}
    values: dict[str, str] = {}
    encrypted = isinstance(obj.get("sops"), dict)
    for key in ("data", "stringData"):  # the API server merges stringData into data, stringData wins
        section = obj.get(key) if isinstance(obj.get(key), dict) else {}
        for k, v in section.items():
            values[str(k)] = UNKNOWN if encrypted else _decoded(v) if key == "data" else _scalar(v)
    return values


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _decoded(value: Any) -> str:
    try:
        return base64.b64decode(_scalar(value), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return UNKNOWN  # the API server would refuse it; nothing to substitute with


def load_variables(ks: dict[str, Any], lookup: Lookup, result: PostBuildResult) -> dict[str, str]:
    """The variables of a Kustomization, in Flux's order; problems and missing objects go to ``result``."""
    post = spec_of(ks).get("postBuild")
    post = post if isinstance(post, dict) else {}
    namespace = namespace_of(ks)
    variables: dict[str, str] = {}
    origin: dict[str, tuple[Any, ...]] = {}  # where each variable was defined last
    refs = post.get("substituteFrom") if isinstance(post.get("substituteFrom"), list) else []
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            continue
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        obj = lookup(kind, name, namespace) if kind in ("ConfigMap", "Secret") else None
        if obj is None:
            if ref.get("optional") is not True:
                result.missing.append(MissingSource(i, kind, name, namespace))
            continue
        for key, value in values_of(obj).items():
            variables[key] = value if value is UNKNOWN else value.replace("\n", "")
            origin[key] = ("spec", "postBuild", "substituteFrom", i)
    inline = post.get("substitute") if isinstance(post.get("substitute"), dict) else {}
    for key, value in inline.items():
        where = ("spec", "postBuild", "substitute", key)
        if not isinstance(value, str):
            result.problems.append(Problem(f"postBuild.substitute.{key} must be a string (quote it)", where))
            continue
        variables[str(key)] = value.replace("\n", "")
        origin[str(key)] = where
    for name in invalid_names(variables):
        result.problems.append(
            Problem(f"variable name {name!r} is invalid, must match {VAR_NAME.pattern}", origin[name])
        )
    return variables


def post_build(
    ks: dict[str, Any],
    objects: list[dict[str, Any]],
    texts: list[str],
    lookup: Lookup,
    *,
    strict: bool = False,
) -> PostBuildResult:
    """``objects`` (with ``texts``, their YAML as kustomize printed it) after postBuild and commonMetadata."""
    result = PostBuildResult()
    has_post_build = isinstance(spec_of(ks).get("postBuild"), dict)
    variables: dict[str, str] | None = None
    for obj, text in zip(objects, texts, strict=True):
        if has_post_build and not opted_out(obj):
            if variables is None:  # Flux loads them for the first object it substitutes
                variables = load_variables(ks, lookup, result)
            if result.problems or result.missing:
                return result
            if variables:
                obj = _substituted(obj, text, variables, strict, result)
                if obj is None:
                    return result
        result.objects.append(obj)
    result.objects = _common_metadata(ks, result.objects)
    return result


def _substituted(
    obj: dict[str, Any], text: str, variables: dict[str, str], strict: bool, result: PostBuildResult
) -> dict[str, Any] | None:
    where = f"post build failed for '{label_of(obj)}'"
    try:
        out = yaml.load(substitute(text, variables, strict=strict), Loader=OutputLoader)
    except SubstitutionError as exc:
        result.problems.append(Problem(f"{where}: envsubst error: {exc}", ("spec", "postBuild")))
        return None
    except yaml.YAMLError as exc:
        result.problems.append(
            Problem(f"{where}: the substituted YAML does not parse: {exc}", ("spec", "postBuild"))
        )
        return None
    if not isinstance(out, dict):
        result.problems.append(Problem(f"{where}: the substituted YAML is no object", ("spec", "postBuild")))
        return None
    return json.loads(json.dumps(out, default=str))


def _common_metadata(ks: dict[str, Any], objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``objects`` (copied where changed) with commonMetadata's labels and annotations set."""
    common = spec_of(ks).get("commonMetadata")
    common = common if isinstance(common, dict) else {}
    sets = {k: common[k] for k in ("labels", "annotations") if isinstance(common.get(k), dict) and common[k]}
    if not sets:
        return objects
    out = []
    for obj in objects:
        md = dict(obj.get("metadata") or {})
        for key, values in sets.items():
            current = md.get(key) if isinstance(md.get(key), dict) else {}
            md[key] = {**current, **{str(k): _scalar(v) for k, v in values.items()}}
        out.append({**obj, "metadata": md})
    return out
