"""kustomize-controller: a Flux Kustomization reconciled in Flux 2.7's order, with its reasons and messages.

``Reconcile`` (kustomize-controller v1.7, internal/controller/kustomization_controller.go):

1. the source (``spec.sourceRef``) must exist (``ArtifactFailed``, the API's NotFound, retried after
   ``retryInterval``) and have an artifact (``Source artifact not found, retrying in 30s``);
2. every ``dependsOn`` Kustomization must exist, be Ready for its generation and, when it shares the
   source, have applied this revision: else ``DependencyNotReady``, ``dependency 'ns/name' is not
   ready`` (``... revision is not up to date``), retried after 30 s (``--requeue-dependency``);
3. ``spec.path`` must exist in the artifact (``ArtifactFailed``, ``kustomization path not found``);
4. the build (``BuildFailed``): the decryption Secret's keys, the Flux-exact build of ``spec.path``
   (:mod:`fluxops.layout.flux_build`: generated kustomization.yaml, patches, components,
   targetNamespace ...), then object by object SOPS decryption (:mod:`fluxops.sim.decrypt`) and
   ``postBuild`` substitution, then ``commonMetadata``;
5. the apply (``ReconciliationFailed``): an encrypted Secret without ``spec.decryption`` is refused;
   Flux's staged server-side apply: CRDs, Namespaces and ClusterRoles, then ``*Class`` kinds, then
   the rest, each stage dry-run as a whole first (``X/ns/name dry-run failed: no matches for kind``,
   ``... not found: namespaces "x" not found``, ``... dry-run failed (Invalid): ...``); the objects
   get Flux's ownership labels;
6. prune (``spec.prune``): what the previous inventory had and this one lacks is deleted (unless
   annotated ``kustomize.toolkit.fluxcd.io/prune: disabled``);
7. health (``wait: true``: every applied object; else ``spec.healthChecks``): polled every 5 s until
   ``spec.timeout``; a Flux object counts when Ready for its generation (workloads have nothing
   running in the simulator and count at once); failure is ``HealthCheckFailed``, ``health check
   failed after 5m0s: timeout waiting for: [HelmRelease/ns/name status: 'InProgress']``;
8. Ready ``ReconciliationSucceeded``, ``Applied revision: main@sha1:...``, ``lastAppliedRevision``;
   next run after ``interval``; any failure retries after ``retryInterval`` (default: interval).

``reconcile.fluxcd.io/requestedAt`` is answered in ``status.lastHandledReconcileAt``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fluxops.layout.flux_build import FluxBuild, finish, plan, source_folder
from fluxops.layout.kustomize import BuildResult
from fluxops.sim import conditions as cond
from fluxops.sim import decrypt, source
from fluxops.sim.api import Api, identity, meta, name_of
from fluxops.sim.clock import format_duration, parse_duration
from fluxops.sim.results import KUSTOMIZE_REQUEUE_DEPENDENCY, Context, Event, HealthWait, Result
from fluxops.sim.store import State, key_of
from fluxops.sim.validation import ApiError

GROUP = "kustomize.toolkit.fluxcd.io"
MANAGER = "kustomize-controller"
FINALIZER = "finalizers.fluxcd.io"
NAME_LABEL = f"{GROUP}/name"
NAMESPACE_LABEL = f"{GROUP}/namespace"
PRUNE_ANNOTATION = f"{GROUP}/prune"
DECRYPT_ANNOTATION = f"{GROUP}/decrypt"
DISABLED = "disabled"
READY_KINDS_GROUP_SUFFIX = ".toolkit.fluxcd.io"


class Failure(Exception):
    """A reconcile step failed with a Flux reason; the message is Flux's."""

    def __init__(self, reason: str, message: str, stage: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.stage = stage


def timings(spec: dict[str, Any]) -> tuple[float, float, float]:
    """(interval, retryInterval, timeout): retryInterval and timeout default to the interval."""
    interval = parse_duration(spec.get("interval"), 600.0)
    retry = parse_duration(spec.get("retryInterval"), interval) or interval
    timeout = parse_duration(spec.get("timeout"), interval) or interval
    return interval, retry, timeout


def inventory_id(obj: dict[str, Any]) -> str:
    """Flux's inventory id: ``<namespace>_<name>_<group>_<kind>``."""
    namespace, name = name_of(obj)
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return f"{namespace}_{name}_{group}_{obj.get('kind', '')}"


def stage_of(obj: dict[str, Any]) -> int:
    """Flux's apply stage: 0 CRDs, Namespaces, ClusterRoles; 1 ``*Class`` kinds; 2 the rest."""
    kind = str(obj.get("kind", ""))
    if kind in ("CustomResourceDefinition", "Namespace", "ClusterRole"):
        return 0
    return 1 if kind.endswith("Class") else 2


_FIRST = ("CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterClass", "RuntimeClass",
          "PriorityClass", "StorageClass", "VolumeSnapshotClass", "IngressClass", "GatewayClass",
          "ClusterRoleBinding", "ResourceQuota", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
          "Secret", "Service", "LimitRange", "Deployment", "StatefulSet", "CronJob",
          "PodDisruptionBudget")  # fmt: skip
_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def apply_order(obj: dict[str, Any]) -> tuple[int, str, str, str, str]:
    """fluxcd/pkg/ssa's sort: known kinds first in its order, webhooks last, then group, kind, ns, name."""
    kind = str(obj.get("kind", ""))
    if kind in _FIRST:
        rank = -len(_FIRST) + _FIRST.index(kind)
    elif kind in _LAST:
        rank = 1 + _LAST.index(kind)
    else:
        rank = 0
    api_version = str(obj.get("apiVersion", ""))
    namespace, name = name_of(obj)
    return rank, api_version.rsplit("/", 1)[0] if "/" in api_version else "", kind, namespace, name


def dry_run_message(obj: dict[str, Any], exc: ApiError) -> str:
    """fluxcd/pkg/ssa's DryRunErr text for an object the API refused."""
    label = identity(obj)
    if exc.not_found:
        namespace, _ = name_of(obj)
        return f"{label} {'not found' if namespace else 'namespace not specified'}: {exc.message}"
    reason = f" ({exc.reason})" if exc.reason else ""
    return f"{label} dry-run failed{reason}: {exc.message}"


def reconcile(ctx: Context, view: State, obj: dict[str, Any]) -> Result:
    """One reconcile of a Kustomization against the snapshot ``view``."""
    now = ctx.now
    spec = obj.get("spec") or {}
    status = dict(obj.get("status") or {})
    namespace, name = name_of(obj)
    interval, retry, timeout = timings(spec)
    result = Result(status=status, manager=MANAGER, requeue=interval)
    finalizers = list(meta(obj).get("finalizers") or [])
    if meta(obj).get("deletionTimestamp"):
        return _finalize(obj, status, result)
    if FINALIZER not in finalizers:
        result.finalizers = [*finalizers, FINALIZER]
    if spec.get("suspend"):
        result.requeue = None
        return result

    def failed(
        reason: str, message: str, requeue: float, what: str = "failed", stage: str = "source"
    ) -> Result:
        cond.mark(status, cond.READY, "False", reason, message, now)
        cond.finalize(obj, status, now)
        result.requeue = requeue
        result.stage = stage
        result.events.append(Event(now, "Kustomization", namespace, name, what, reason, message, stage))
        return result

    fault = (ctx.faults.get("kustomizations") or {}).get(f"{namespace}/{name}") or {}
    result.delay = float(fault.get("slow") or 0)
    ref = spec.get("sourceRef") if isinstance(spec.get("sourceRef"), dict) else {}
    src_kind, src_name = str(ref.get("kind", "")), str(ref.get("name", ""))
    src = source.source_of(view, src_kind, str(ref.get("namespace") or namespace), src_name)
    if src_kind not in source.SOURCE_KINDS or src_kind in ("HelmRepository", "HelmChart"):
        return failed(cond.ARTIFACT_FAILED, f"source `{src_name}` kind '{src_kind}' not supported", retry)
    if src is None:
        return failed(cond.ARTIFACT_FAILED, source.not_found_message(src_kind, src_name), retry)
    artifact = (src.get("status") or {}).get("artifact")
    if not artifact or src_kind != "GitRepository":
        wait = format_duration(KUSTOMIZE_REQUEUE_DEPENDENCY)
        message = f"Source artifact not found, retrying in {wait}"
        return failed(cond.ARTIFACT_FAILED, message, KUSTOMIZE_REQUEUE_DEPENDENCY, "waiting")
    revision = str(artifact.get("revision", ""))
    problem = _dependency_problem(view, obj, revision)
    if problem is not None:
        return failed(
            cond.DEPENDENCY_NOT_READY, problem, KUSTOMIZE_REQUEUE_DEPENDENCY, "waiting", "dependencies"
        )
    result.events.append(Event(now, "Kustomization", namespace, name, "started", cond.PROGRESSING, revision))
    try:
        if fault.get("fail"):
            raise Failure(cond.RECONCILIATION_FAILED, str(fault["fail"]), "fault")
        root = source.artifact_dir(ctx, artifact)
        objects = build(ctx, view, obj, root)
        status["lastAttemptedRevision"] = revision
        applied = _apply(ctx, view, obj, objects, result)
        _prune(view, obj, status, applied, result)
    except Failure as exc:
        status["lastAttemptedRevision"] = revision
        cond.mark(status, cond.RECONCILING, "True", cond.PROGRESSING_WITH_RETRY, exc.message, now)
        return failed(exc.reason, exc.message, retry, stage=exc.stage)
    checks = applied if spec.get("wait") else _health_refs(view, obj)
    pending = [
        o
        for o in checks
        if _needs_health(o) and not (o.get("kind") == "Kustomization" and name_of(o) == (namespace, name))
    ]
    if pending:
        message = (
            f"Running health checks for revision {revision} with a timeout of {format_duration(timeout)}"
        )
        cond.mark(status, cond.READY, "Unknown", cond.PROGRESSING, "Reconciliation in progress", now)
        cond.mark(status, cond.RECONCILING, "True", cond.PROGRESSING, message, now)
        cond.mark(status, cond.HEALTHY, "Unknown", cond.PROGRESSING, message, now)
        result.health = HealthWait(
            [key_of(o) for o in pending],
            [identity(o) for o in pending],
            now + timeout,
            now,
            revision,
            timeout,
        )
        result.requeue = None
        labels = ", ".join(identity(o) for o in pending)
        result.events.append(
            Event(now, "Kustomization", namespace, name, "applied", cond.PROGRESSING, f"waiting for {labels}")
        )
        return result
    return succeed(obj, status, result, revision, now, interval)


def succeed(
    obj: dict[str, Any], status: dict[str, Any], result: Result, revision: str, now: float, interval: float
) -> Result:
    """Ready: ``Applied revision: ...``, lastAppliedRevision, next run after the interval."""
    namespace, name = name_of(obj)
    spec = obj.get("spec") or {}
    status["lastAppliedRevision"] = revision
    if spec.get("wait") or spec.get("healthChecks"):
        cond.mark(status, cond.HEALTHY, "True", cond.SUCCEEDED, "Health check passed", now)
    else:
        cond.delete(status, cond.HEALTHY)
    message = f"Applied revision: {revision}"
    cond.mark(status, cond.READY, "True", cond.RECONCILIATION_SUCCEEDED, message, now)
    cond.finalize(obj, status, now)
    result.requeue = interval
    result.events.append(
        Event(now, "Kustomization", namespace, name, "ready", cond.RECONCILIATION_SUCCEEDED, message)
    )
    return result


def health_failed(
    obj: dict[str, Any], status: dict[str, Any], wait: HealthWait, states: list[str], now: float
) -> Event:
    """Mark a timed-out health check as Flux does; the event for the timeline."""
    namespace, name = name_of(obj)
    inner = f"timeout waiting for: [{', '.join(states)}]"
    message = f"health check failed after {format_duration(now - wait.started)}: {inner}"
    cond.mark(status, cond.HEALTHY, "False", cond.HEALTH_CHECK_FAILED, inner, now)
    cond.mark(status, cond.READY, "False", cond.HEALTH_CHECK_FAILED, message, now)
    cond.finalize(obj, status, now)
    return Event(now, "Kustomization", namespace, name, "failed", cond.HEALTH_CHECK_FAILED, message)


def health_state(view: State, key: str, label: str) -> str | None:
    """None when the object is healthy, else its status as kstatus names it (``Kind/ns/name status: 'X'``)."""
    obj = view.objects.get(key)
    if obj is None:
        return f"{label} status: 'NotFound'"
    if cond.is_ready(obj):
        return None
    if cond.is_true(obj, cond.STALLED):
        return f"{label} status: 'Failed'"
    return f"{label} status: 'InProgress'"


def _needs_health(obj: dict[str, Any]) -> bool:
    """Objects whose readiness the simulator models: Flux's own kinds (everything else is Current)."""
    api_version = str(obj.get("apiVersion", ""))
    return api_version.split("/")[0].endswith(READY_KINDS_GROUP_SUFFIX)


def _health_refs(view: State, obj: dict[str, Any]) -> list[dict[str, Any]]:
    """``spec.healthChecks`` as the objects they name (absent ones as stubs)."""
    namespace, _ = name_of(obj)
    found = []
    for ref in (obj.get("spec") or {}).get("healthChecks") or []:
        if not isinstance(ref, dict):
            continue
        api_version = str(ref.get("apiVersion", ""))
        md = {"name": ref.get("name"), "namespace": ref.get("namespace") or namespace}
        stub = {"apiVersion": api_version, "kind": ref.get("kind"), "metadata": md}
        found.append(stub)
    return found


def _dependency_problem(view: State, obj: dict[str, Any], revision: str) -> str | None:
    """Flux's ``checkDependencies``: the first dependsOn entry that is missing, not Ready or behind."""
    namespace, _ = name_of(obj)
    spec = obj.get("spec") or {}
    ref = spec.get("sourceRef") or {}
    for dep in spec.get("dependsOn") or []:
        if not isinstance(dep, dict):
            continue
        dep_ns, dep_name = str(dep.get("namespace") or namespace), str(dep.get("name", ""))
        label = f"{dep_ns}/{dep_name}"
        other = view.get(GROUP, "Kustomization", dep_ns, dep_name)
        if other is None:
            return f"dependency '{label}' not found: kustomizations.{GROUP} \"{dep_name}\" not found"
        if not (other.get("status") or {}).get("conditions") or not cond.is_ready(other):
            return f"dependency '{label}' is not ready"
        other_ref = (other.get("spec") or {}).get("sourceRef") or {}
        same = (
            other_ref.get("name") == ref.get("name")
            and other_ref.get("kind") == ref.get("kind")
            and (other_ref.get("namespace") or dep_ns) == (ref.get("namespace") or namespace)
        )
        if same and (other.get("status") or {}).get("lastAppliedRevision") != revision:
            return f"dependency '{label}' revision is not up to date"
    return None


def build(ctx: Context, view: State, ks: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """The objects Flux applies for ``ks`` from the artifact ``root``; Failure(BuildFailed) otherwise."""
    spec = ks.get("spec") or {}
    namespace, _ = name_of(ks)
    dec = spec.get("decryption") if isinstance(spec.get("decryption"), dict) else None
    sops = dec is not None and dec.get("provider") == "sops"
    identities = decrypt.age_identities({})
    if sops and isinstance(dec.get("secretRef"), dict):
        secret_name = str(dec["secretRef"].get("name", ""))
        secret = view.get("", "Secret", namespace, secret_name)
        if secret is None:
            raise Failure(cond.BUILD_FAILED, f'secrets "{secret_name}" not found', "decryption")
        identities = decrypt.age_identities(secret)
    if not source_folder(root, str(spec.get("path") or "")).is_dir():
        where = source_folder(root, str(spec.get("path") or ""))
        message = f"kustomization path not found: stat {where}: no such file or directory"
        raise Failure(cond.ARTIFACT_FAILED, message, "build")
    flux_plan = plan(ks, root)
    if flux_plan.target is None:
        problem = next((p for p in flux_plan.problems if p.severity == "error"), None)
        raise Failure(cond.BUILD_FAILED, problem.message if problem else "nothing to build", "build")
    built = ctx.builder.build(flux_plan.target)
    if not built.ok:
        raise Failure(cond.BUILD_FAILED, f"kustomize build failed: {built.error}", "build")
    objects, texts = [], []
    for obj, text in zip(built.objects, built.texts, strict=True):
        md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        if not (obj.get("apiVersion") and obj.get("kind") and md.get("name")):
            shown = yaml.safe_dump(obj, sort_keys=False).strip()
            raise Failure(
                cond.BUILD_FAILED,
                f"failed to decode Kubernetes apiVersion, kind and name from: {shown}",
                "build",
            )
        disabled = str((md.get("annotations") or {}).get(DECRYPT_ANNOTATION, "")).lower() == DISABLED
        if sops and decrypt.is_encrypted(obj) and not disabled:
            try:
                obj = decrypt.decrypt(obj, identities)
            except decrypt.DecryptionError as exc:
                raise Failure(cond.BUILD_FAILED, str(exc), "decryption") from None
            text = yaml.safe_dump(obj, sort_keys=False)
        objects.append(obj)
        texts.append(text)
    done = finish(
        flux_plan,
        BuildResult(built.folder, True, objects, texts=texts),
        lambda kind, name, ns: view.get("", kind, ns, name),
        strict=bool(ctx.settings.get("strict_substitutions")),
    )
    if not done.ok:
        raise Failure(cond.BUILD_FAILED, _post_build_message(done, objects), "substitution")
    return done.objects


def _post_build_message(done: FluxBuild, objects: list[dict[str, Any]]) -> str:
    """kustomize-controller's wording of a postBuild failure (objects named by kustomize's Gvk)."""
    if done.missing:
        first = objects[0] if objects else {}
        missing = done.missing[0]
        plural = "configmaps" if missing.kind == "ConfigMap" else "secrets"
        where = f"{decrypt.gvk(first)}/{(first.get('metadata') or {}).get('name', '')}"
        detail = f'{plural} "{missing.name}" not found'
        source = f"{missing.kind}/{missing.name}"
        return f"post build failed for '{where}': substitute from '{source}' error: {detail}"
    message = done.problems[0].message if done.problems else "post build failed"
    match = re.match(r"post build failed for '([^/']+)/([^']*)'", message)
    if match:
        obj = next(
            (
                o
                for o in objects
                if o.get("kind") == match.group(1) and (o.get("metadata") or {}).get("name") == match.group(2)
            ),
            None,
        )
        if obj is not None:
            message = message.replace(
                match.group(0), f"post build failed for '{decrypt.gvk(obj)}/{match.group(2)}'", 1
            )
    return message


def _apply(
    ctx: Context, view: State, ks: dict[str, Any], objects: list[dict[str, Any]], result: Result
) -> list[dict[str, Any]]:
    """Flux's staged apply, dry-run against a copy of the snapshot; the stages go to ``result``."""
    namespace, name = name_of(ks)
    for obj in objects:
        disabled = (
            str(((obj.get("metadata") or {}).get("annotations") or {}).get(DECRYPT_ANNOTATION, "")).lower()
            == DISABLED
        )
        if decrypt.is_encrypted(obj) and obj.get("kind") == "Secret" and not disabled:
            message = (
                f"{identity(obj)} is SOPS encrypted, configuring decryption is required for this secret "
            )
            message += "to be reconciled"
            raise Failure(cond.RECONCILIATION_FAILED, message, "apply")
    work = view.copy()
    api = Api(work, ctx.validator, ctx.now)
    applied: list[dict[str, Any]] = []
    log: list[str] = []
    stages: dict[int, list[dict[str, Any]]] = {}
    for obj in objects:
        owned = dict(obj)
        md = dict(owned.get("metadata") or {})
        md["labels"] = {**(md.get("labels") or {}), NAME_LABEL: name, NAMESPACE_LABEL: namespace}
        owned["metadata"] = md
        stages.setdefault(stage_of(owned), []).append(owned)
    for stage in sorted(stages):
        batch = sorted(stages[stage], key=apply_order)
        admitted = []
        for obj in batch:
            try:
                admitted.append(api.admit(obj)[1])
            except ApiError as exc:
                changes = "\n".join(log)
                raise Failure(
                    cond.RECONCILIATION_FAILED,
                    (dry_run_message(obj, exc) + "\n" + changes).strip(),
                    "validation",
                ) from None
        for obj in admitted:
            action, _ = api.apply(obj, MANAGER, schema=False)
            if action != "unchanged":
                log.append(f"{identity(obj)} {action}")
        result.stages.append(admitted)
        applied.extend(admitted)
    return applied


def _prune(
    view: State, ks: dict[str, Any], status: dict[str, Any], applied: list[dict[str, Any]], result: Result
) -> None:
    """The new inventory; with ``prune``, delete what the old one had and this one lacks."""
    entries = sorted(
        {inventory_id(o): str(o.get("apiVersion", "")).rsplit("/", 1)[-1] for o in applied}.items()
    )
    old = (status.get("inventory") or {}).get("entries") or []
    status["inventory"] = {"entries": [{"id": i, "v": v} for i, v in entries]}
    if not (ks.get("spec") or {}).get("prune"):
        return
    keep = {i for i, _ in entries}
    for entry in old:
        if entry.get("id") in keep:
            continue
        stale = _object_for(view, str(entry.get("id", "")))
        if stale is None:
            continue
        if ((stale.get("metadata") or {}).get("annotations") or {}).get(PRUNE_ANNOTATION) == DISABLED:
            continue
        result.delete.append(stale)


def _object_for(view: State, entry: str) -> dict[str, Any] | None:
    """The stored object an inventory id names."""
    parts = entry.split("_")
    if len(parts) < 4:
        return None
    namespace, name, kind = parts[0], "_".join(parts[1:-2]), parts[-1]
    return view.get(parts[-2], kind, namespace, name)


def _finalize(obj: dict[str, Any], status: dict[str, Any], result: Result) -> Result:
    """Deletion: with ``prune``, the inventory's objects are deleted, then the finalizer goes."""
    result.requeue = None
    if (obj.get("spec") or {}).get("prune") and not (obj.get("spec") or {}).get("suspend"):
        result.delete.extend(
            {"_inventory": e.get("id")} for e in (status.get("inventory") or {}).get("entries") or []
        )
    result.finalizers = [f for f in meta(obj).get("finalizers") or [] if f != FINALIZER]
    return result


def object_for(view: State, entry: str) -> dict[str, Any] | None:
    """The stored object an inventory id names (for the commit of a deletion)."""
    return _object_for(view, entry)
