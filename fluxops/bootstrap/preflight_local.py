"""Bootstrap's checks on this machine, before anything reaches the node.

The cluster's key is in the key store and its public key is a recipient of the cluster's
``.sops.yaml`` rule; ``layout.validate`` and ``secrets.check`` find no error for the cluster; the
commit Flux will pull (the local branch's head) is on the remote Flux reads (``git ls-remote``),
unless ``allow_unpushed``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.bootstrap.node import BootstrapError
from fluxops.bootstrap.target import Target
from fluxops.errors import FluxopsError
from fluxops.masking import Secret
from fluxops.progname import progname

GIT_TIMEOUT = 60.0
SHOWN_FINDINGS = 5


@dataclass
class LocalFacts:
    """What the local preflight established."""

    key_file: Path
    public_key: str
    identities: Secret
    commit: str = ""  # the commit Flux will pull ("" with allow_unpushed and no remote answer)
    pushed: bool = False
    phases: list[dict[str, Any]] = field(default_factory=list)  # the tree's Flux Kustomizations


def check_key(root: Path, key_dir: Path, cluster: str) -> tuple[Path, str, Secret]:
    """The cluster's key file, public key and text; an error naming the key when it is missing or
    is not a recipient of the cluster's ``.sops.yaml`` rule."""
    from fluxops.secrets import keys, keystore, rules

    path = keystore.key_path(key_dir, cluster)
    if not path.is_file():
        raise BootstrapError(keys.missing_key_message(root, cluster, path))
    try:
        public = keystore.public_key(path, cluster=cluster)
        wanted = rules.cluster_recipients(root, cluster)
    except FluxopsError as exc:
        raise BootstrapError(str(exc)) from None
    if public not in wanted:
        raise BootstrapError(
            f"the key of cluster {cluster} ({path}, {public}) is not a recipient of its .sops.yaml rule "
            f"({', '.join(wanted) or 'none'}): Flux could not decrypt the cluster's secrets with it. "
            f"Import the key the rule names (`{progname()} keys.import --cluster {cluster} FILE`) or "
            f"finish the rotation in progress (`{progname()} keys.rotate --cluster {cluster} --resume`)"
        )
    return path, public, Secret(path.read_text(encoding="utf-8"))


def check_tree(root: Path, key_dir: Path, cluster: str) -> list[dict[str, Any]]:
    """``layout.validate`` and ``secrets.check`` for the cluster: an error listing the first findings;
    the cluster's Flux Kustomizations as the tree holds them."""
    from fluxops.layout.validate import validate
    from fluxops.secrets import check as secrets_check

    tree, findings = validate(root, cluster, key_dir=key_dir)
    errors = [f"{f.where}: {f.message}" for f in findings.errors if f.cluster in ("", cluster)]
    scope = [f"k8s/clusters/{cluster}", ".sops.yaml"]
    errors += [str(f) for f in secrets_check.check(root, key_dir, within=scope)]
    if errors:
        shown = "\n  ".join(errors[:SHOWN_FINDINGS])
        more = f"\n  ... and {len(errors) - SHOWN_FINDINGS} more" if len(errors) > SHOWN_FINDINGS else ""
        raise BootstrapError(
            f"cluster {cluster} does not pass layout.validate and secrets.check ({len(errors)} "
            f"error(s)); fix them first (`{progname()} layout.validate --cluster {cluster}`):"
            f"\n  {shown}{more}"
        )
    found = tree.clusters.get(cluster)
    return [p.obj for p in found.phases] if found is not None else []


def _git(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), *argv], capture_output=True, text=True, timeout=GIT_TIMEOUT
    )


def check_pushed(root: Path, url: str, branch: str, allow_unpushed: bool) -> tuple[str, bool]:
    """The local head of ``branch`` and whether the remote ``url`` has it on ``branch``."""
    head = _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    local = head.stdout.strip() if head.returncode == 0 else ""
    remote = _git(root, "ls-remote", url, f"refs/heads/{branch}")
    remote_sha = remote.stdout.split()[0] if remote.returncode == 0 and remote.stdout.split() else ""
    pushed = bool(local and remote_sha) and (
        remote_sha == local or _git(root, "merge-base", "--is-ancestor", local, remote_sha).returncode == 0
    )
    if pushed or allow_unpushed:
        return remote_sha or local, pushed
    if not local:
        why = f"this repository has no branch {branch}"
    elif remote.returncode != 0:
        why = f"git ls-remote {url} failed: {(remote.stderr.strip().splitlines() or ['?'])[-1]}"
    elif not remote_sha:
        why = f"{url} has no branch {branch}"
    else:
        why = f"{branch} is at {local[:12]} here but {url} has {remote_sha[:12]}"
    raise BootstrapError(
        f"the commit Flux would pull is not on the remote it reads: {why}. Push it "
        f"(`git push {url} {branch}`), or bootstrap what the remote has with --allow-unpushed"
    )


def preflight_local(target: Target, key_dir: Path, *, allow_unpushed: bool = False) -> LocalFacts:
    """Every local check, in order; the first failure is a BootstrapError saying what to do."""
    key_file, public, identities = check_key(target.root, key_dir, target.cluster)
    phases = check_tree(target.root, key_dir, target.cluster)
    commit, pushed = check_pushed(target.root, target.url, target.branch, allow_unpushed)
    return LocalFacts(key_file, public, identities, commit, pushed, phases)
