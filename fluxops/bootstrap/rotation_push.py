"""Key rotation's online steps: the cluster's ``sops-age`` Secret holding the given keys, proven.

:func:`push` puts the key files' identities (joined: age reads each one) into the Secret through
stdin (:func:`fluxops.bootstrap.key.put_key`), then reconciles every phase: the step is done only when
no phase fails to decrypt. Before the new key alone goes in, the re-encrypted files must be what
Flux pulls (committed and on the remote), else the cluster would lose the key its commit needs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import yaml

from fluxops import inventory as inv
from fluxops.bootstrap import phases
from fluxops.bootstrap.key import joined, put_key
from fluxops.bootstrap.node import Node, over_ssh
from fluxops.bootstrap.preflight_local import check_pushed
from fluxops.bootstrap.target import Target, target_for
from fluxops.defaults import DEFAULTS
from fluxops.errors import FluxopsError
from fluxops.masking import Secret
from fluxops.progname import progname

Opener = Callable[[inv.Host], AbstractContextManager[Node]]
INVENTORY_ENV = "INVOKE_FLUXOPS_INVENTORY"


class PushFailed(FluxopsError):
    """The keys could not be put into the cluster, or the cluster did not decrypt with them."""


def inventory_of(root: Path) -> Path:
    """The inventory the repository's tasks use: ``$INVOKE_FLUXOPS_INVENTORY``, else ``fluxops.inventory``
    of its invoke.yaml, else the default; relative paths from ``root``."""
    name = os.environ.get(INVENTORY_ENV)
    if not name:
        config = Path(root) / "invoke.yaml"
        section: Any = {}
        if config.is_file():
            section = (yaml.safe_load(config.read_text()) or {}).get("fluxops") or {}
        name = str(section.get("inventory") or DEFAULTS["inventory"])
    path = Path(name).expanduser()
    return path if path.is_absolute() else Path(root) / path


def _committed_and_pushed(target: Target) -> None:
    """The cluster's files and .sops.yaml committed, and the commit on the remote Flux reads."""
    rel = [f"k8s/clusters/{target.cluster}", ".sops.yaml"]
    dirty = subprocess.run(["git", "-C", str(target.root), "status", "--porcelain", "--", *rel],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    if dirty.returncode != 0 or dirty.stdout.strip():
        raise PushFailed(
            f"the re-encrypted files of cluster {target.cluster} are not committed yet; Flux would still "
            "pull files the new key alone cannot read. Commit and push them (git add .sops.yaml "
            f"k8s/clusters/{target.cluster} && git commit && git push), then "
            f"`{progname()} keys.rotate --cluster {target.cluster} --resume`"
        )
    try:
        check_pushed(target.root, target.url, target.branch, allow_unpushed=False)
    except FluxopsError as exc:
        raise PushFailed(
            f"{exc}; then `{progname()} keys.rotate --cluster {target.cluster} --resume`"
        ) from None


def push(
    root: Path,
    cluster: str,
    key_files: list[Path],
    *,
    inventory: Path | None = None,
    open_node: Opener | None = None,
) -> str:
    """Put the keys of ``key_files`` in the cluster's sops-age Secret and prove every phase still
    decrypts; what was done. One key file alone (the new key) needs the rotation pushed first."""
    path = inventory or inventory_of(root)
    if not path.is_file():
        raise PushFailed(f"no inventory {path} to find the cluster's server in")
    target = target_for(root, inv.load(path, root=root), cluster)
    if len(key_files) == 1:
        _committed_and_pushed(target)
    identities = joined([Secret(p.read_text(encoding="utf-8")) for p in key_files])
    with (open_node or over_ssh)(target.host) as node:
        action = put_key(node, identities)
        outcome = phases.reconcile(node, cluster, target.entry)
    undecrypted = [p for p in outcome.phases if p.state == "failed" and "decrypt" in p.message]
    if undecrypted or not outcome.ok:
        worst = (undecrypted or [p for p in outcome.phases if p.name == outcome.stopped_at])[0]
        raise PushFailed(f"after the push, phase {worst.name} fails: {worst.message}")
    ready = sum(1 for p in outcome.phases if p.state == "ready")
    keys = f"{len(key_files)} key(s)"
    return f"sops-age on {target.host.name} {action} ({keys}); {ready} phase(s) reconciled Ready"
