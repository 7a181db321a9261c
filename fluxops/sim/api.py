"""The simulated API server: admission (kind, namespace, schema), apply, get, delete, over a :class:`State`.

What it mirrors (Kubernetes API conventions):

- an object whose kind the node does not serve: ``no matches for kind "X" in version "G/V"``;
- a namespaced object in a namespace that does not exist: ``namespaces "x" not found`` (NotFound);
  a namespaced object without a namespace, as Flux applies it: NotFound, "the server could not find
  the requested resource"; a cluster-scoped object's namespace is dropped;
- schema and metadata errors as :mod:`fluxops.sim.validation` words them;
- a Secret's ``stringData`` is merged into ``data`` (base64) and dropped, as the API server does;
- server-side apply: each field manager owns the labels and annotations it applied, so another
  manager's (``kubectl annotate``'s ``reconcile.fluxcd.io/requestedAt``) survive a re-apply;
  ``status`` is never taken from an apply; ``metadata.generation`` goes up when anything but
  metadata and status changes; ``resourceVersion`` on every change;
- deletion waits for finalizers (``metadata.deletionTimestamp`` is set); deleting a Namespace or a
  CRD deletes what it holds.
"""

from __future__ import annotations

import base64
import binascii
import copy
import uuid
from typing import Any

from fluxops.sim import kinds
from fluxops.sim.clock import rfc3339
from fluxops.sim.kinds import CRD_GROUP, Kind
from fluxops.sim.store import State, group_of, key_of, object_key, version_of
from fluxops.sim.validation import ApiError, Validator, not_found

SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
)
CREATED, CONFIGURED, UNCHANGED = "created", "configured", "unchanged"


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` of an object (created empty if missing)."""
    md = obj.get("metadata")
    if not isinstance(md, dict):
        md = obj["metadata"] = {}
    return md


def name_of(obj: dict[str, Any]) -> tuple[str, str]:
    """(namespace, name)."""
    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return str(md.get("namespace") or ""), str(md.get("name") or "")


def identity(obj: dict[str, Any]) -> str:
    """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped), as Flux's ssa utilities print objects."""
    namespace, name = name_of(obj)
    return f"{obj.get('kind', '')}/{namespace + '/' if namespace else ''}{name}"


def _body(obj: dict[str, Any]) -> dict[str, Any]:
    """What a change of generation looks at: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Api:
    """API server operations on one state document (the caller holds its lock when it writes)."""

    def __init__(self, state: State, validator: Validator, now: float) -> None:
        self.state = state
        self.validator = validator
        self.now = now

    # -- reading ------------------------------------------------------------------------------

    def kind_for(self, api_version: str, kind: str) -> Kind:
        """The served kind, or the RESTMapper's no-match error."""
        found = kinds.lookup(self.state, api_version, kind)
        if found is None:
            raise ApiError(kinds.no_match(api_version, kind))
        return found

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, or None."""
        return self.state.get(kind.group, kind.kind, namespace if kind.namespaced else "", name)

    def list(self, kind: Kind, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of a kind, in one namespace or all."""
        return self.state.list(kind.group, kind.kind, namespace if kind.namespaced else None)

    def namespace_exists(self, name: str) -> bool:
        """True when the Namespace exists (and is not being deleted)."""
        ns = self.state.get("", "Namespace", "", name)
        return ns is not None and not meta(ns).get("deletionTimestamp")

    # -- admission ----------------------------------------------------------------------------

    def admit(
        self, obj: dict[str, Any], *, default_namespace: str | None = None, schema: bool = True
    ) -> tuple[Kind, dict[str, Any]]:
        """``obj`` as the API server would store it, or a dry-run's error (kind, namespace, schema)."""
        api_version, kind_name = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        kind = self.kind_for(api_version, kind_name)
        out = copy.deepcopy(obj)
        md = meta(out)
        if kind.namespaced:
            if not md.get("namespace") and default_namespace:
                md["namespace"] = default_namespace
            namespace = str(md.get("namespace") or "")
            if not namespace:
                raise ApiError("the server could not find the requested resource", "NotFound", 404)
            if not self.namespace_exists(namespace):
                raise not_found("namespaces", namespace)
        else:
            md.pop("namespace", None)
        if kind.kind == "Secret" and not kind.group:
            _merge_string_data(out)
        if schema:
            self.validator.check(self.state, out, kind)
        return kind, out

    # -- writing ------------------------------------------------------------------------------

    def apply(
        self, obj: dict[str, Any], manager: str, *, default_namespace: str | None = None, schema: bool = True
    ) -> tuple[str, dict[str, Any]]:
        """Server-side apply of ``obj`` by ``manager``: (created|configured|unchanged, stored object)."""
        kind, desired = self.admit(obj, default_namespace=default_namespace, schema=schema)
        key = key_of(desired)
        current = self.state.objects.get(key)
        managed = self.state.data.setdefault("managed", {}).setdefault(key, {})
        md = meta(desired)
        owned = {
            "labels": sorted((md.get("labels") or {}).keys()),
            "annotations": sorted((md.get("annotations") or {}).keys()),
        }
        if current is None:
            stored = desired
            md.update(
                uid=str(uuid.uuid4()),
                creationTimestamp=rfc3339(self.now),
                resourceVersion=self.state.next_rv(),
            )
            for field in ("deletionTimestamp",):
                md.pop(field, None)
            if "spec" in desired or kind.crd:
                md["generation"] = 1
            stored.pop("status", None)
            managed.clear()
            managed[manager] = owned
            self.state.objects[key] = stored
            self._created(kind, stored)
            return CREATED, stored
        stored = copy.deepcopy(current)
        smd = meta(stored)
        previous = managed.get(manager, {"labels": [], "annotations": []})
        for field in ("labels", "annotations"):
            merged = dict(smd.get(field) or {})
            for name in previous.get(field, []):
                if name not in (md.get(field) or {}):
                    merged.pop(name, None)
            merged.update(md.get(field) or {})
            if merged:
                smd[field] = merged
            else:
                smd.pop(field, None)
        for k in list(stored):
            if k not in ("metadata", "status", "apiVersion", "kind") and k not in desired:
                del stored[k]
        for k, v in desired.items():
            if k not in ("metadata", "status"):
                stored[k] = v
        managed[manager] = owned
        if stored == current:
            return UNCHANGED, current
        if _body(stored) != _body(current) and "generation" in smd:
            smd["generation"] = int(smd["generation"]) + 1
        smd["resourceVersion"] = self.state.next_rv()
        self.state.objects[key] = stored
        return CONFIGURED, stored

    def write_status(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any] | None:
        """Replace the status of the stored object (the status subresource); None if it is gone."""
        current = self.state.objects.get(key_of(obj))
        if current is None:
            return None
        if current.get("status") != status:
            current["status"] = status
            meta(current)["resourceVersion"] = self.state.next_rv()
        return current

    def patch_metadata(
        self, obj: dict[str, Any], manager: str, **fields: dict[str, str | None]
    ) -> dict[str, Any]:
        """Set (or, with None, remove) labels or annotations of a stored object (``kubectl annotate``)."""
        current = self.state.objects.get(key_of(obj))
        if current is None:
            namespace, name = name_of(obj)
            raise not_found(kinds_resource(self.state, obj), name or namespace)
        md = meta(current)
        managed = self.state.data.setdefault("managed", {}).setdefault(key_of(current), {})
        mine = managed.setdefault(manager, {"labels": [], "annotations": []})
        for field, values in fields.items():
            target = dict(md.get(field) or {})
            for k, v in values.items():
                if v is None:
                    target.pop(k, None)
                else:
                    target[k] = v
                    if k not in mine[field]:
                        mine[field].append(k)
            if target:
                md[field] = target
            else:
                md.pop(field, None)
        md["resourceVersion"] = self.state.next_rv()
        return current

    def set_finalizers(self, obj: dict[str, Any], finalizers: list[str]) -> None:
        """Replace a stored object's finalizers; an object being deleted goes when none are left."""
        key = key_of(obj)
        current = self.state.objects.get(key)
        if current is None:
            return
        md = meta(current)
        if finalizers:
            md["finalizers"] = finalizers
        else:
            md.pop("finalizers", None)
        md["resourceVersion"] = self.state.next_rv()
        if md.get("deletionTimestamp") and not finalizers:
            self._remove(key)

    def delete(self, obj: dict[str, Any]) -> bool:
        """Delete a stored object (marked for deletion while it has finalizers); False if not there."""
        key = key_of(obj)
        current = self.state.objects.get(key)
        if current is None:
            return False
        md = meta(current)
        group, kind_name = group_of(str(current.get("apiVersion", ""))), str(current.get("kind", ""))
        if kind_name == "Namespace" and not group:
            for other in [o for k, o in self.state.objects.items() if k.split("|")[2] == md["name"]]:
                self.delete(other)
        if kind_name == "CustomResourceDefinition" and group == CRD_GROUP:
            found = kinds.crd_kind(current)
            if found is not None:
                for other in self.state.list(found.group, found.kind):
                    self.delete(other)
        if md.get("finalizers") or (kind_name == "Namespace" and self._holds_objects(md["name"])):
            if not md.get("deletionTimestamp"):
                md["deletionTimestamp"] = rfc3339(self.now)
                md["resourceVersion"] = self.state.next_rv()
                if kind_name == "Namespace":
                    current.setdefault("status", {})["phase"] = "Terminating"
            return True
        self._remove(key)
        return True

    def collect_garbage(self) -> None:
        """Remove Namespaces being deleted once they hold nothing (the namespace controller's last step)."""
        for ns in self.state.list("", "Namespace"):
            md = meta(ns)
            if (
                md.get("deletionTimestamp")
                and not md.get("finalizers")
                and not self._holds_objects(md["name"])
            ):
                self._remove(key_of(ns))

    def _holds_objects(self, namespace: str) -> bool:
        return any(k.split("|")[2] == namespace for k in self.state.objects)

    def _remove(self, key: str) -> None:
        self.state.objects.pop(key, None)
        self.state.data.setdefault("managed", {}).pop(key, None)
        self.state.schedule.pop(key, None)
        self.state.next_rv()

    def _created(self, kind: Kind, stored: dict[str, Any]) -> None:
        """What the API server does beside storing: a CRD is Established, a Namespace Active."""
        if kind.kind == "CustomResourceDefinition" and kind.group == CRD_GROUP:
            names = (stored.get("spec") or {}).get("names") or {}
            stored["status"] = {
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": rfc3339(self.now)},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted",
                     "lastTransitionTime": rfc3339(self.now)},
                ],
                "storedVersions": [kinds.crd_kind(stored).versions[0]] if kinds.crd_kind(stored) else [],
            }  # fmt: skip
        elif kind.kind == "Namespace" and not kind.group:
            stored["status"] = {"phase": "Active"}


def kinds_resource(state: State, obj: dict[str, Any]) -> str:
    """The resource name (plural, with group) of an object's kind, for NotFound messages."""
    found = kinds.by_group_kind(state, group_of(str(obj.get("apiVersion", ""))), str(obj.get("kind", "")))
    return found.resource if found is not None else str(obj.get("kind", "")).lower() + "s"


def _merge_string_data(secret: dict[str, Any]) -> None:
    """The API server's conversion of a Secret: ``stringData`` into ``data`` (base64), which must decode."""
    data = dict(secret.get("data") or {})
    for key, value in data.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data in data[{key!r}]',
                "BadRequest",
                400,
            ) from None
    for key, value in (secret.pop("stringData", None) or {}).items():
        data[str(key)] = base64.b64encode(str(value).encode()).decode()
    if data:
        secret["data"] = data


def stored_key(kind: Kind, namespace: str, name: str) -> str:
    """The store key of an object of ``kind``."""
    return object_key(kind.group, kind.kind, namespace if kind.namespaced else "", name)


def version_in(obj: dict[str, Any]) -> str:
    """The version part of an object's apiVersion."""
    return version_of(str(obj.get("apiVersion", "")))
