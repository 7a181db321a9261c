"""source-controller: GitRepository fetched with real git; HelmRepository and HelmChart without a network.

GitRepository (source-controller v1.7): the ``spec.ref`` (``branch``, default ``master``; ``tag``;
``commit``, with or without a branch) is cloned with git (``file://`` and ``ssh://`` URLs; an ssh
deploy key comes from ``spec.secretRef``'s ``identity`` and ``known_hosts``). The artifact's revision
is ``<branch>@sha1:<commit>`` (``<tag>@sha1:...``; ``sha1:<commit>`` for a bare commit), the Ready
message ``stored artifact for revision '...'``; a failure is ``GitOperationFailed``: ``failed to
checkout and determine revision: ...``, and the last artifact stays. The node's settings may map URLs
to others (``git_rewrites``, like git's ``url.<base>.insteadOf``) and limit the protocols git may use
(``git_protocols``, git's ``GIT_ALLOW_PROTOCOL``).

HelmRepository is Ready without fetching its index; HelmChart is Ready when its source exists and is
Ready (``failed to get source: ...`` with reason ``SourceUnavailable`` otherwise). Charts are never
pulled, so nothing of a chart is rendered.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from fluxops.errors import CommandError
from fluxops.secrets import editor
from fluxops.shell import local
from fluxops.sim import conditions as cond
from fluxops.sim.api import meta, name_of
from fluxops.sim.clock import parse_duration, rfc3339
from fluxops.sim.results import SOURCE_RETRY, Context, Event, Result
from fluxops.sim.store import State

GROUP = "source.toolkit.fluxcd.io"
MANAGER = "source-controller"
FINALIZER = "finalizers.fluxcd.io"
GIT_TIMEOUT = 120.0
KEEP_ARTIFACTS = 2  # source-controller's --artifact-retention-records default
SOURCE_KINDS = {
    "GitRepository": "gitrepositories",
    "HelmRepository": "helmrepositories",
    "HelmChart": "helmcharts",
    "OCIRepository": "ocirepositories",
    "Bucket": "buckets",
    "ExternalArtifact": "externalartifacts",
}


class GitError(Exception):
    """git failed; the message is what source-controller would say after its prefix."""


def source_of(view: State, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """A source object of ``kind`` in the snapshot."""
    return view.get(GROUP, kind, namespace, name)


def not_found_message(kind: str, name: str) -> str:
    """The API's NotFound for a source, as controller-runtime's client words it."""
    return f'{SOURCE_KINDS.get(kind, kind.lower() + "s")}.{GROUP} "{name}" not found'


def artifact_dir(ctx: Context, artifact: dict[str, Any]) -> Path:
    """The folder holding an artifact's files."""
    return ctx.artifacts / str(artifact.get("path", ""))


def _ready(status: dict[str, Any], message: str, now: float, reason: str = cond.SUCCEEDED) -> None:
    cond.mark(status, cond.READY, "True", reason, message, now)
    cond.mark(status, "ArtifactInStorage", "True", reason, message, now)
    cond.delete(status, "FetchFailed")
    cond.delete(status, cond.RECONCILING)


def _failed(status: dict[str, Any], reason: str, message: str, now: float) -> None:
    cond.mark(status, cond.READY, "False", reason, message, now)
    cond.mark(status, "FetchFailed", "True", reason, message, now)


def _event(obj: dict[str, Any], now: float, status: dict[str, Any]) -> Event:
    value, reason, message = cond.ready_reason({"status": status})
    namespace, name = name_of(obj)
    return Event(
        now, str(obj.get("kind")), namespace, name, "ready" if value == "True" else "failed", reason, message
    )


def reconcile_git(ctx: Context, view: State, obj: dict[str, Any]) -> Result:
    """Fetch a GitRepository's ref with git and store it as the artifact."""
    now = ctx.now
    spec = obj.get("spec") or {}
    status = dict(obj.get("status") or {})
    interval = parse_duration(spec.get("interval"), 60.0)
    result = Result(status=status, manager=MANAGER, requeue=interval)
    if FINALIZER not in (meta(obj).get("finalizers") or []):
        result.finalizers = [*(meta(obj).get("finalizers") or []), FINALIZER]
    if meta(obj).get("deletionTimestamp"):
        result.finalizers = [f for f in meta(obj).get("finalizers") or [] if f != FINALIZER]
        return result
    if spec.get("suspend"):
        result.requeue = None
        return result
    namespace, name = name_of(obj)
    try:
        commit, revision = _fetch(ctx, view, obj, namespace, name)
    except GitError as exc:
        _failed(status, "GitOperationFailed", f"failed to checkout and determine revision: {exc}", now)
        cond.finalize(obj, status, now)
        result.requeue = SOURCE_RETRY
        result.events.append(_event(obj, now, status))
        return result
    path = f"gitrepository/{namespace}/{name}/{commit}"
    status["artifact"] = {
        "digest": "sha256:" + hashlib.sha256(revision.encode()).hexdigest(),
        "lastUpdateTime": rfc3339(now),
        "path": path,
        "revision": revision,
        "size": 0,
        "url": f"http://source-controller.flux-system.svc.cluster.local./{path}.tar.gz",
    }
    _ready(status, f"stored artifact for revision '{revision}'", now)
    cond.finalize(obj, status, now)
    result.events.append(_event(obj, now, status))
    return result


def rewrite(url: str, rewrites: dict[str, str]) -> str:
    """``url`` with the longest matching prefix replaced (git's ``url.<base>.insteadOf``)."""
    for prefix in sorted(rewrites, key=len, reverse=True):
        if url.startswith(prefix):
            return rewrites[prefix] + url[len(prefix) :]
    return url


def _fetch(ctx: Context, view: State, obj: dict[str, Any], namespace: str, name: str) -> tuple[str, str]:
    """(commit, revision) of the GitRepository's ref, its files in the artifact folder."""
    spec = obj.get("spec") or {}
    url = rewrite(str(spec.get("url", "")), ctx.settings.get("git_rewrites") or {})
    ref = spec.get("ref") if isinstance(spec.get("ref"), dict) else {}
    if ref.get("semver"):
        raise GitError(f"unable to clone '{spec.get('url')}': ref.semver is not supported by the simulator")
    branch = None if ref.get("tag") or ref.get("name") else str(ref.get("branch") or "master")
    tag = ref.get("tag")
    private = editor.private_folder("fluxops-sim-git-")
    try:
        env = _git_env(ctx, view, spec, namespace, private)
        want = f"refs/tags/{tag}" if tag else str(ref.get("name") or f"refs/heads/{branch}")
        commit = str(ref.get("commit") or "") or _ls_remote(url, want, env, spec)
        label = tag or branch
        revision = f"{label}@sha1:{commit}" if label else f"sha1:{commit}"
        folder = ctx.artifacts / "gitrepository" / namespace / name
        target = folder / commit
        if not target.is_dir():
            _clone(url, want, commit, bool(ref.get("commit")), target, private, env, spec)
            _prune(folder, keep=target)
        return commit, revision
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _git_env(
    ctx: Context, view: State, spec: dict[str, Any], namespace: str, private: Path
) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(private),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ALLOW_PROTOCOL": str(ctx.settings.get("git_protocols") or "file:ssh"),
    }
    secret_ref = spec.get("secretRef") if isinstance(spec.get("secretRef"), dict) else {}
    secret = view.get("", "Secret", namespace, str(secret_ref.get("name", ""))) if secret_ref else None
    if secret is not None and str(spec.get("url", "")).startswith("ssh://"):
        import base64

        data = secret.get("data") or {}
        identity = private / "identity"
        identity.write_bytes(base64.b64decode(str(data.get("identity", ""))))
        identity.chmod(0o600)
        known = private / "known_hosts"
        known.write_bytes(base64.b64decode(str(data.get("known_hosts", ""))))
        env["GIT_SSH_COMMAND"] = (
            f"ssh -i {identity} -o IdentitiesOnly=yes -o UserKnownHostsFile={known} "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes"
        )
    return env


def _git(argv: list[str], env: dict[str, str], spec: dict[str, Any], cwd: Path | None = None) -> str:
    timeout = parse_duration(spec.get("timeout"), 60.0) or GIT_TIMEOUT
    try:
        result = local().run(
            ["git", *argv], env=env, cwd=cwd, timeout=timeout, check=False, inherit_env=False
        )
    except CommandError as exc:
        raise GitError(f"unable to clone '{spec.get('url')}': {exc}") from None
    if result.rc != 0:
        lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
        detail = lines[-1].removeprefix("fatal: ") if lines else f"git exited with {result.rc}"
        raise GitError(f"unable to clone '{spec.get('url')}': {detail}")
    return result.stdout


def _ls_remote(url: str, want: str, env: dict[str, str], spec: dict[str, Any]) -> str:
    out = _git(["ls-remote", url, want], env, spec)
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == want:
            return sha
    raise GitError(f"unable to clone '{spec.get('url')}': couldn't find remote ref \"{want}\"")


def _clone(
    url: str,
    want: str,
    commit: str,
    exact: bool,
    target: Path,
    private: Path,
    env: dict[str, str],
    spec: dict,
) -> None:
    work = private / "clone"
    if exact:
        _git(["clone", "--quiet", "--no-checkout", url, str(work)], env, spec)
        _git(["checkout", "--quiet", commit], env, spec, cwd=work)
    else:
        short = want.rsplit("/", 1)[-1] if want.startswith(("refs/heads/", "refs/tags/")) else want
        _git(
            ["clone", "--quiet", "--depth", "1", "--branch", short, "--single-branch", url, str(work)],
            env,
            spec,
        )
        head = _git(["rev-parse", "HEAD"], env, spec, cwd=work).strip()
        if head != commit:
            _git(["fetch", "--quiet", "--depth", "1", "origin", commit], env, spec, cwd=work)
            _git(["checkout", "--quiet", commit], env, spec, cwd=work)
    shutil.rmtree(work / ".git", ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{private.name}")
    shutil.move(str(work), staging)
    try:
        staging.rename(target)
    except OSError:  # another process stored the same commit first
        shutil.rmtree(staging, ignore_errors=True)


def _prune(folder: Path, keep: Path) -> None:
    """Keep the newest KEEP_ARTIFACTS artifacts of a source (the one just stored among them)."""
    entries = sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in [p for p in entries if p != keep][KEEP_ARTIFACTS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def reconcile_helm_repository(ctx: Context, view: State, obj: dict[str, Any]) -> Result:
    """A HelmRepository is Ready without its index being fetched (the simulator has no network)."""
    now = ctx.now
    spec = obj.get("spec") or {}
    status = dict(obj.get("status") or {})
    result = Result(status=status, manager=MANAGER, requeue=parse_duration(spec.get("interval"), 600.0))
    if spec.get("type") == "oci":
        cond.mark(status, cond.READY, "True", cond.SUCCEEDED, "Helm repository is Ready", now)
    else:
        revision = "sha256:" + hashlib.sha256(str(spec.get("url", "")).encode()).hexdigest()
        namespace, name = name_of(obj)
        path = f"helmrepository/{namespace}/{name}/index-{revision[7:23]}.yaml"
        status["artifact"] = {
            "revision": revision,
            "digest": revision,
            "path": path,
            "lastUpdateTime": rfc3339(now),
        }
        status["url"] = f"http://source-controller.flux-system.svc.cluster.local./{path}"
        _ready(status, f"stored artifact: revision '{revision}'", now)
    cond.finalize(obj, status, now)
    result.events.append(_event(obj, now, status))
    return result


def reconcile_helm_chart(ctx: Context, view: State, obj: dict[str, Any]) -> Result:
    """A HelmChart is Ready once its source exists and is Ready; the chart itself is never pulled."""
    now = ctx.now
    spec = obj.get("spec") or {}
    status = dict(obj.get("status") or {})
    result = Result(status=status, manager=MANAGER, requeue=parse_duration(spec.get("interval"), 600.0))
    namespace, name = name_of(obj)
    ref = spec.get("sourceRef") if isinstance(spec.get("sourceRef"), dict) else {}
    kind = str(ref.get("kind", ""))
    if kind not in ("HelmRepository", "GitRepository", "Bucket"):
        message = f"failed to get source: unsupported source kind '{kind}', must be one of: "
        message += "[HelmRepository GitRepository Bucket]"
        _failed(status, "UnsupportedSourceKind", message, now)
    else:
        source = source_of(view, kind, namespace, str(ref.get("name", "")))
        if source is None:
            message = f"failed to get source: {not_found_message(kind, str(ref.get('name', '')))}"
            _failed(status, "SourceUnavailable", message, now)
            result.requeue = SOURCE_RETRY
        elif not cond.is_ready(source):
            _failed(
                status,
                "SourceUnavailable",
                f"failed to get source: {kind} '{namespace}/{ref.get('name')}' is not ready",
                now,
            )
            result.requeue = SOURCE_RETRY
        else:
            version = str(spec.get("version") or "*")
            chart = str(spec.get("chart", ""))
            path = f"helmchart/{namespace}/{name}/{chart}-{version}.tgz"
            status["artifact"] = {"revision": version, "path": path, "lastUpdateTime": rfc3339(now)}
            status["observedChartName"] = chart
            _ready(status, f"pulled '{chart}' chart with version '{version}'", now, "ChartPullSucceeded")
    cond.finalize(obj, status, now)
    result.events.append(_event(obj, now, status))
    return result
