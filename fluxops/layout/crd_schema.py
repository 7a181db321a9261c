"""Custom resources against the openAPIV3Schema of their CRD.

A CRD's structural schema is turned into JSON Schema the way the API server reads it:
``nullable`` admits null, ``x-kubernetes-int-or-string`` an integer or a string,
``x-kubernetes-preserve-unknown-fields`` keeps fields the schema does not name,
``x-kubernetes-embedded-resource`` implies apiVersion, kind and metadata, and the root always has
them. Unknown fields are errors as with kubeconform ``-strict``: an object schema that names its
properties and says nothing of others admits no others (not inside allOf/anyOf/oneOf/not, which
only add value checks to a structural schema). CEL rules (``x-kubernetes-validations``) and
formats are not checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fluxops.layout.schema_errors import Problem, problems_of

# Value checks copied as they are (OpenAPI 3.0 and JSON Schema draft 4 agree on them).
VALUE_KEYWORDS = (
    "type",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "required",
)
JUNCTORS = ("allOf", "anyOf", "oneOf")
IMPLICIT_ROOT = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
# Keys only people read: dropped from shipped schema data.
DOC_KEYS = ("description", "example", "externalDocs")
# Keys whose values are data, not schemas: kept as they are.
DATA_KEYS = ("default", "enum", "x-kubernetes-validations", "required")


@dataclass(frozen=True)
class CrdVersion:
    """One version of a CRD: whether it is served, deprecated, and its schema."""

    name: str
    served: bool
    storage: bool
    deprecated: bool
    warning: str
    schema: Any


@dataclass
class CrdKind:
    """A kind a CRD defines: its versions and where the CRD comes from.

    ``identity`` names shipped data (e.g. ``flux v2.7.5``); without it the schema's content is
    hashed to key cached results.
    """

    group: str
    kind: str
    versions: dict[str, CrdVersion]
    origin: str
    identity: str = ""
    _validators: dict[str, Any] = field(default_factory=dict, repr=False)
    _fingerprints: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def served(self) -> list[str]:
        """The apiVersions the CRD serves (``group/version``), storage version first."""
        names = sorted((v for v in self.versions.values() if v.served), key=lambda v: not v.storage)
        return [f"{self.group}/{v.name}" for v in names]

    def fingerprint(self, version: str) -> str:
        """What a cached result for ``version`` depends on."""
        if version not in self._fingerprints:
            entry = self.versions.get(version)
            if self.identity:
                text = f"{self.identity}:{version}"
            else:
                body = json.dumps(entry.__dict__ if entry else None, sort_keys=True, default=str)
                text = hashlib.sha256(body.encode()).hexdigest()
            self._fingerprints[version] = text
        return self._fingerprints[version]

    def validate(self, obj: Mapping[str, Any], version: str) -> list[Problem]:
        """Problems of ``obj`` against the schema of ``version`` (none when that version has no schema)."""
        entry = self.versions.get(version)
        if entry is None or not isinstance(entry.schema, dict):
            return []
        if version not in self._validators:
            from jsonschema import Draft4Validator

            self._validators[version] = Draft4Validator(to_json_schema(entry.schema, root=True))
        body = {k: v for k, v in obj.items() if k != "status"}
        return problems_of(self._validators[version].iter_errors(body))


def parse_crd(obj: Mapping[str, Any], origin: str, identity: str = "") -> CrdKind | None:
    """The kind a CustomResourceDefinition object defines (None when it names no group or kind)."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return None
    names = spec.get("names") if isinstance(spec.get("names"), Mapping) else {}
    group, kind = spec.get("group"), names.get("kind")
    if not isinstance(group, str) or not isinstance(kind, str) or not group or not kind:
        return None
    shared = _schema_of(spec.get("validation"))  # apiextensions.k8s.io/v1beta1
    versions: dict[str, CrdVersion] = {}
    entries = spec.get("versions") if isinstance(spec.get("versions"), list) else []
    if not entries and isinstance(spec.get("version"), str):
        entries = [{"name": spec["version"], "served": True, "storage": True}]
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        schema = _schema_of(entry.get("schema"))
        versions[entry["name"]] = CrdVersion(
            name=entry["name"],
            served=entry.get("served", True) is not False,
            storage=entry.get("storage") is True,
            deprecated=entry.get("deprecated") is True,
            warning=str(entry.get("deprecationWarning") or ""),
            schema=schema if schema is not None else shared,
        )
    return CrdKind(group, kind, versions, origin, identity)


def _schema_of(holder: Any) -> Any:
    return holder.get("openAPIV3Schema") if isinstance(holder, Mapping) else None


def to_json_schema(node: Any, *, root: bool = False, strict: bool = True) -> dict[str, Any]:
    """A JSON Schema (draft 4) for one node of a structural openAPIV3Schema."""
    if not isinstance(node, Mapping):
        return {}
    out: dict[str, Any] = {k: node[k] for k in VALUE_KEYWORDS if k in node}
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("x-kubernetes-int-or-string") is True:
        out["type"] = ["integer", "string"]
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        out["properties"] = {str(k): to_json_schema(v, strict=strict) for k, v in properties.items()}
    if root or node.get("x-kubernetes-embedded-resource") is True:
        out["properties"] = {**IMPLICIT_ROOT, **out.get("properties", {})}
        if root and not isinstance(properties, Mapping):
            preserve = True  # a CRD without a schema for its root keeps whatever it is given
    items = node.get("items")
    if isinstance(items, Mapping):
        out["items"] = to_json_schema(items, strict=strict)
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        out["additionalProperties"] = to_json_schema(extra, strict=strict)
    elif isinstance(extra, bool):
        out["additionalProperties"] = extra
    elif strict and "properties" in out and not preserve:
        out["additionalProperties"] = False
    for junctor in JUNCTORS:
        if isinstance(node.get(junctor), list):
            out[junctor] = [to_json_schema(b, strict=False) for b in node[junctor]]
    if isinstance(node.get("not"), Mapping):
        out["not"] = to_json_schema(node["not"], strict=False)
    return out


def strip_docs(node: Any) -> Any:
    """A copy of an openAPIV3Schema without descriptions and examples (fields named so are kept)."""
    if isinstance(node, list):
        return [strip_docs(n) for n in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DOC_KEYS:
            continue
        if key in DATA_KEYS:
            out[key] = value
        elif key in ("properties", "patternProperties") and isinstance(value, Mapping):
            out[key] = {name: strip_docs(sub) for name, sub in value.items()}
        else:
            out[key] = strip_docs(value)
    return out
