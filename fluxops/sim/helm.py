"""helm-controller: a HelmRelease is Ready when its chart source is Ready and its values resolve.

In helm-controller v1.4's order (``reconcileRelease``):

1. every ``dependsOn`` HelmRelease Ready, else ``DependencyNotReady`` (``dependency 'ns/name' is not
   ready``), retried after 5 s (``--requeue-dependency``);
2. the HelmChart ``<namespace>-<name>`` made from ``spec.chart`` in the source's namespace; not Ready
   yet: ``SourceNotReady`` (``HelmChart 'ns/name' is not ready: ...``);
3. ``valuesFrom`` (ConfigMaps and Secrets of the release's namespace, key ``values.yaml`` by default,
   later ones merged over earlier ones) then ``values``: a missing object or key, or data that is not
   YAML, is ``ValuesError`` with fluxcd/pkg chartutil's message (``could not resolve ConfigMap chart
   values reference 'ns/name' with key 'values.yaml': ...``); ``optional`` references may be absent;
4. install (upgrade after a change): the release's namespace must exist unless
   ``install.createNamespace``, which creates it (as ``helm install --create-namespace``); success
   is ``InstallSucceeded`` / ``UpgradeSucceeded``.
5. a release whose chart values name an in-cluster Service (``name.namespace.svc...``) that does not
   exist is ``InstallFailed`` with ``context deadline exceeded``: on a real node its pods cannot
   reach that Service, never turn ready, and helm's wait times out (the deadlock
   ``fluxops.layout.references`` finds offline; the same analysis names the Service here). A Service
   exists when the API holds it or when a HelmRelease there would create it (a chart's Services are
   named after its release).

The chart is never pulled or rendered: nothing it would install reaches the simulated API.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import yaml

from fluxops.layout.merge import merge_maps
from fluxops.layout.references import Creation, creations, references
from fluxops.sim import conditions as cond
from fluxops.sim.api import meta, name_of
from fluxops.sim.clock import parse_duration
from fluxops.sim.results import HELM_REQUEUE_DEPENDENCY, Context, Event, Result
from fluxops.sim.store import State

GROUP = "helm.toolkit.fluxcd.io"
MANAGER = "helm-controller"
FINALIZER = "finalizers.fluxcd.io"
SOURCE_GROUP = "source.toolkit.fluxcd.io"


def chart_name(obj: dict[str, Any]) -> str:
    """The HelmChart helm-controller makes for a HelmRelease: ``<namespace>-<name>``."""
    namespace, name = name_of(obj)
    return f"{namespace}-{name}"


def release_name(obj: dict[str, Any]) -> tuple[str, str]:
    """(namespace, name) of the Helm release: ``targetNamespace`` and ``releaseName`` or their defaults."""
    spec = obj.get("spec") or {}
    namespace, name = name_of(obj)
    target = str(spec.get("targetNamespace") or "")
    default = f"{target}-{name}" if target else name
    return target or namespace, str(spec.get("releaseName") or default)[:53]


def chart_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The HelmChart object for ``spec.chart`` (None when the release uses ``chartRef``)."""
    spec = obj.get("spec") or {}
    chart = spec.get("chart") if isinstance(spec.get("chart"), dict) else None
    if chart is None or not isinstance(chart.get("spec"), dict):
        return None
    cspec = chart["spec"]
    namespace, _ = name_of(obj)
    ref = dict(cspec.get("sourceRef") or {})
    source_ns = str(ref.pop("namespace", "") or namespace)
    body = {
        "chart": cspec.get("chart"),
        "version": cspec.get("version") or "*",
        "sourceRef": ref,
        "interval": cspec.get("interval") or spec.get("interval") or "10m",
        "reconcileStrategy": cspec.get("reconcileStrategy") or "ChartVersion",
    }
    if cspec.get("valuesFiles"):
        body["valuesFiles"] = cspec["valuesFiles"]
    return {
        "apiVersion": f"{SOURCE_GROUP}/v1",
        "kind": "HelmChart",
        "metadata": {
            "name": chart_name(obj),
            "namespace": source_ns,
            "labels": {
                "helm.toolkit.fluxcd.io/name": name_of(obj)[1],
                "helm.toolkit.fluxcd.io/namespace": namespace,
            },
        },
        "spec": body,
    }


def _values_error(kind: str, namespace: str, name: str, key: str, optional: bool, reason: str) -> str:
    word = " optional" if optional else ""
    where = f"'{namespace}/{name}' with key '{key}'"
    return f"could not resolve{word} {kind} chart values reference {where}: {reason}"


def resolve_values(view: State, obj: dict[str, Any]) -> dict[str, Any]:
    """The release's values: ``valuesFrom`` in order, then ``values``; ValueError with chartutil's message."""
    spec = obj.get("spec") or {}
    namespace, _ = name_of(obj)
    merged: dict[str, Any] = {}
    for ref in spec.get("valuesFrom") or []:
        if not isinstance(ref, dict):
            continue
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        key, optional = str(ref.get("valuesKey") or "values.yaml"), ref.get("optional") is True
        if kind not in ("ConfigMap", "Secret"):
            raise ValueError(
                _values_error(kind, namespace, name, key, optional, "unsupported values reference kind")
            )
        source = view.get("", kind, namespace, name)
        if source is None:
            if optional:
                continue
            missing = f'{kind.lower()}s "{name}" not found'
            raise ValueError(_values_error(kind, namespace, name, key, optional, missing))
        data = source.get("data") or {}
        if key not in data:
            if optional:
                continue
            raise ValueError(_values_error(kind, namespace, name, key, optional, "key not found"))
        raw = str(data[key])
        if kind == "Secret":
            try:
                raw = base64.b64decode(raw).decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise ValueError(
                    _values_error(kind, namespace, name, key, optional, "failed to read values data")
                ) from None
        if ref.get("targetPath"):
            _set_path(merged, str(ref["targetPath"]), raw)
            continue
        try:
            values = yaml.safe_load(raw) or {}
        except yaml.YAMLError as exc:
            detail = f"failed to read values data: {str(exc).splitlines()[0]}"
            raise ValueError(_values_error(kind, namespace, name, key, optional, detail)) from None
        if not isinstance(values, dict):
            raise ValueError(
                _values_error(kind, namespace, name, key, optional, "failed to read values data")
            )
        merged = merge_maps(merged, values)
    inline = spec.get("values")
    return merge_maps(merged, inline if isinstance(inline, dict) else {})


def _set_path(values: dict[str, Any], path: str, value: str) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        values = values.setdefault(part, {})
    values[parts[-1]] = value


def _dependency_problem(view: State, obj: dict[str, Any]) -> str | None:
    namespace, _ = name_of(obj)
    for dep in (obj.get("spec") or {}).get("dependsOn") or []:
        if not isinstance(dep, dict):
            continue
        dep_ns, dep_name = str(dep.get("namespace") or namespace), str(dep.get("name", ""))
        other = view.get(GROUP, "HelmRelease", dep_ns, dep_name)
        if other is None:
            missing = f'helmreleases.{GROUP} "{dep_name}" not found'
            return f"unable to get '{dep_ns}/{dep_name}' dependency: {missing}"
        if not cond.is_ready(other):
            return f"dependency '{dep_ns}/{dep_name}' is not ready"
    return None


def missing_service(view: State, obj: dict[str, Any], values: dict[str, Any]) -> str | None:
    """The first in-cluster Service (``.svc`` name) the release's values name that nothing provides."""
    charts: list[Creation] | None = None  # the Services the cluster's releases create, read once if needed
    for ref in references(obj, chart=(values, [])):
        if ref.kind != "Service" or ref.optional or ".svc" not in ref.text:
            continue
        if view.get("", "Service", ref.namespace, ref.name) is not None:
            continue
        if charts is None:
            releases = view.list(GROUP, "HelmRelease")
            charts = [c for r in releases for c in creations(r, resolve_or_empty(view, r))]
        if any(c.covers(ref) for c in charts):
            continue
        return f"it refers to Service {ref.namespace}/{ref.name} ({ref.text}), which does not exist"
    return None


def resolve_or_empty(view: State, obj: dict[str, Any]) -> dict[str, Any]:
    """The release's values, or none when they do not resolve (for naming what it creates)."""
    try:
        return resolve_values(view, obj)
    except ValueError:
        return {}


def reconcile_release(ctx: Context, view: State, obj: dict[str, Any]) -> Result:
    """One helm-controller reconcile of a HelmRelease."""
    now = ctx.now
    spec = obj.get("spec") or {}
    status = dict(obj.get("status") or {})
    namespace, name = name_of(obj)
    interval = parse_duration(spec.get("interval"), 600.0)
    result = Result(status=status, manager=MANAGER, requeue=interval)
    finalizers = list(meta(obj).get("finalizers") or [])
    if meta(obj).get("deletionTimestamp"):
        result.finalizers = [f for f in finalizers if f != FINALIZER]
        return result
    if FINALIZER not in finalizers:
        result.finalizers = [*finalizers, FINALIZER]
    if spec.get("suspend"):
        result.requeue = None
        return result

    def fail(reason: str, message: str, requeue: float | None = None) -> Result:
        cond.mark(status, cond.READY, "False", reason, message, now)
        cond.mark(status, cond.RECONCILING, "True", cond.PROGRESSING, "Fulfilling prerequisites", now)
        cond.finalize(obj, status, now)
        result.requeue = requeue if requeue is not None else interval
        result.events.append(Event(now, "HelmRelease", namespace, name, "failed", reason, message))
        return result

    problem = _dependency_problem(view, obj)
    if problem is not None:
        return fail(cond.DEPENDENCY_NOT_READY, problem, HELM_REQUEUE_DEPENDENCY)
    template = chart_template(obj)
    if template is None:
        return fail("ArtifactFailed", "could not get Source object: spec.chartRef is not simulated")
    result.create.append(template)
    chart_ns = template["metadata"]["namespace"]
    chart = view.get(SOURCE_GROUP, "HelmChart", chart_ns, template["metadata"]["name"])
    if chart is None or not cond.is_ready(chart) or (chart.get("spec") or {}) != template["spec"]:
        detail = "latest generation of object has not been reconciled"
        if chart is not None and cond.ready_reason(chart)[0] == "False":
            detail = cond.ready_reason(chart)[2]
        message = f"HelmChart '{chart_ns}/{template['metadata']['name']}' is not ready: {detail}"
        return fail("SourceNotReady", message, HELM_REQUEUE_DEPENDENCY)
    try:
        values = resolve_values(view, obj)
    except ValueError as exc:
        return fail("ValuesError", str(exc))
    target_ns, release = release_name(obj)
    chart_label = (
        f"{template['spec']['chart']}@{(chart.get('status') or {}).get('artifact', {}).get('revision', '*')}"
    )
    install = spec.get("install") if isinstance(spec.get("install"), dict) else {}
    history = list(status.get("history") or [])
    upgrading = bool(history)
    if (
        not upgrading
        and not install.get("createNamespace")
        and view.get("", "Namespace", "", target_ns) is None
    ):
        chart_name_only, _, version = chart_label.partition("@")
        message = (
            f"Helm install failed for release {target_ns}/{release} with chart {chart_name_only}@{version}: "
            f'create: failed to create: namespaces "{target_ns}" not found'
        )
        return fail("InstallFailed", message)
    unreachable = missing_service(view, obj, values)
    if unreachable is not None:
        chart_name_only, _, version = chart_label.partition("@")
        verb = "upgrade" if upgrading else "install"
        message = (
            f"Helm {verb} failed for release {target_ns}/{release} with chart {chart_name_only}@{version}: "
            f"context deadline exceeded ({unreachable}: its pods never turn ready)"
        )
        return fail("UpgradeFailed" if upgrading else "InstallFailed", message)
    generation = meta(obj).get("generation")
    if upgrading and history[0].get("observedGeneration") == generation:
        cond.finalize(obj, status, now)
        return result  # nothing changed since the last release
    if install.get("createNamespace") and view.get("", "Namespace", "", target_ns) is None:
        namespace_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target_ns}}
        result.create.insert(0, namespace_obj)  # helm install --create-namespace
    number = int(history[0].get("version", 0)) + 1 if history else 1
    history.insert(0, {"name": release, "namespace": target_ns, "version": number, "status": "deployed",
                       "chartName": template["spec"]["chart"], "chartVersion": chart_label.partition("@")[2],
                       "observedGeneration": generation})  # fmt: skip
    status["history"] = history[:5]
    status["lastAttemptedRevision"] = chart_label.partition("@")[2]
    status["helmChart"] = f"{chart_ns}/{template['metadata']['name']}"
    reason = "UpgradeSucceeded" if upgrading else "InstallSucceeded"
    verb = "upgrade" if upgrading else "install"
    message = f"Helm {verb} succeeded for release {target_ns}/{release}.v{number} with chart {chart_label}"
    cond.mark(status, cond.READY, "True", reason, message, now)
    cond.mark(status, "Released", "True", reason, message, now)
    cond.finalize(obj, status, now)
    result.events.append(Event(now, "HelmRelease", namespace, name, "ready", reason, message))
    return result
