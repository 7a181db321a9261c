"""``layout.new-cluster``: a new cluster's overlay tree, copied from an existing cluster."""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops.clusters import KUSTOMIZATION_FILES
from fluxops.errors import LayoutError
from fluxops.layout.model import DNS_LABEL, Repo
from fluxops.layout.roundtrip import dump_like, load_docs
from fluxops.layout.secrets_check import is_sops_file
from fluxops.layout.sources import YAML_SUFFIXES

APPS = "apps"
EMPTY_APPS = """\
# {name}, phase 3: the cluster's own applications. Add one folder per app and list it here.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: []
"""


@dataclass
class Scaffold:
    """What new-cluster wrote, and what the user still has to do."""

    cluster: str
    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    omitted_secrets: list[dict[str, Any]] = field(default_factory=list)


def check_name(repo: Repo, name: str, like: str) -> None:
    """Refuse a bad or taken name and an unknown template cluster."""
    if not DNS_LABEL.match(name):
        raise LayoutError(
            f"cluster name {name!r} is not a DNS label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    known = repo.cluster_names()
    if name in known or (repo.clusters_dir / name).exists():
        raise LayoutError(f"cluster {name!r} already exists at k8s/clusters/{name}; pick another name")
    if like not in known:
        raise LayoutError(f"--like {like!r} is not a cluster: k8s/clusters has {', '.join(known) or 'none'}")


def pool_addresses(address: str) -> list[str]:
    """The MetalLB pool entry for ``--address``: a single address becomes a /32 (or /128)."""
    text = address.strip()
    try:
        if "-" in text:
            first, last = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
            if first.version != last.version or first > last:
                raise ValueError("range ends differ in family or are reversed")
            return [f"{first}-{last}"]
        if "/" in text:
            return [str(ipaddress.ip_network(text, strict=False))]
        ip = ipaddress.ip_address(text)
        return [f"{ip}/{ip.max_prefixlen}"]
    except ValueError as exc:
        raise LayoutError(
            f"--address {address!r} is not an address, CIDR or range (e.g. 10.0.0.5, 10.0.0.0/28, "
            f"10.0.0.10-10.0.0.20): {exc}"
        ) from None


def _rewrite(value: Any, old: str, new: str) -> Any:
    """Replace the old cluster's folder in every string of a round-trip document, in place."""
    if isinstance(value, dict):
        for key in list(value):
            value[key] = _rewrite(value[key], old, new)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _rewrite(item, old, new)
    elif isinstance(value, str) and old in value:
        return type(value)(value.replace(old, new)) if type(value) is not str else value.replace(old, new)
    return value


def _drop_refs(doc: Any, dropped: set[str]) -> bool:
    """Remove resources entries naming dropped files; True if anything changed."""
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), list):
        return False
    keep = [r for r in doc["resources"] if not (isinstance(r, str) and r in dropped)]
    if len(keep) == len(doc["resources"]):
        return False
    for i in reversed(range(len(doc["resources"]))):
        if isinstance(doc["resources"][i], str) and doc["resources"][i] in dropped:
            del doc["resources"][i]
    return True


def _secret_note(like_file: Path, rel: str, cluster: str) -> dict[str, Any]:
    try:
        docs = load_docs(like_file)
    except Exception:
        docs = []
    doc = docs[0] if docs and isinstance(docs[0], dict) else {}
    md = doc.get("metadata") or {}
    keys = sorted({*(doc.get("stringData") or {}), *(doc.get("data") or {})})
    name, namespace = str(md.get("name", "NAME")), str(md.get("namespace", "default"))
    literals = " ".join(f"--from-file {k}=FILE" for k in keys) or "--from-file KEY=FILE"
    command = (
        f"invoke secrets.new --cluster {cluster} --name {name} --namespace {namespace} {literals} "
        f"--dest k8s/clusters/{cluster}/{rel}"
    )
    return {
        "file": f"k8s/clusters/{cluster}/{rel}",
        "name": name,
        "namespace": namespace,
        "keys": keys,
        "command": command,
    }


def new_cluster(root: Path, name: str, *, like: str = "lab", address: str | None = None) -> Scaffold:
    """Copy ``like``'s overlays to k8s/clusters/NAME: phase files point at the new folder, apps empty.

    SOPS files are not copied (they are encrypted to ``like``'s key): their resources entries are
    dropped, and a note per secret gives the command that creates it for the new cluster.
    """
    repo = Repo(root.resolve())
    check_name(repo, name, like)
    pool = pool_addresses(address) if address else None
    src, dst = repo.clusters_dir / like, repo.clusters_dir / name
    old, new = f"clusters/{like}/", f"clusters/{name}/"
    result = Scaffold(name)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    dropped: dict[Path, set[str]] = {}
    for path in files:
        rel = path.relative_to(src)
        if rel.parts[0] == APPS:
            continue
        if is_sops_file(path.name):
            result.omitted_secrets.append(_secret_note(path, rel.as_posix(), name))
            for folder in [path.parent, *path.parent.parents]:
                if folder == src.parent:
                    break
                dropped.setdefault(folder, set()).add(path.relative_to(folder).as_posix())
    pool_set = False
    try:
        for path in files:
            rel = path.relative_to(src)
            if rel.parts[0] == APPS or is_sops_file(path.name):
                continue
            target = dst / rel
            if path.suffix not in YAML_SUFFIXES:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                result.written.append(repo.rel(target))
                continue
            text = path.read_text(encoding="utf-8")
            docs = load_docs(path)
            changed = old in text or f"clusters/{like}\n" in text
            for doc in docs:
                _rewrite(doc, old, new)
                _rewrite(doc, f"clusters/{like}", f"clusters/{name}")
                if path.name in KUSTOMIZATION_FILES and _drop_refs(doc, dropped.get(path.parent, set())):
                    changed = True
                if pool and isinstance(doc, dict) and doc.get("kind") == "IPAddressPool":
                    doc["spec"]["addresses"] = pool
                    changed = pool_set = True
            if changed:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(dump_like(text, docs), encoding="utf-8")
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            result.written.append(repo.rel(target))
        apps = dst / APPS / "kustomization.yaml"
        apps.parent.mkdir(parents=True, exist_ok=True)
        apps.write_text(EMPTY_APPS.format(name=name), encoding="utf-8")
        result.written.append(repo.rel(apps))
    except Exception:
        shutil.rmtree(dst, ignore_errors=True)
        raise
    if pool and not pool_set:
        result.notes.append(f"{like} has no IPAddressPool, so --address was not used")
    result.notes.append(
        f"create the age key and .sops.yaml rule first: invoke keys.generate --cluster {name}"
    )
    for secret in result.omitted_secrets:
        result.notes.append(
            f"secret {secret['namespace']}/{secret['name']} not copied; create it: {secret['command']}"
        )
    result.notes.append(
        f"add the cluster's hosts to the inventory, then bootstrap with --path ./k8s/clusters/{name}"
    )
    return result
