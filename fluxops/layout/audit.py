"""``layout.audit``: definitions repeated across cluster overlays, and moving them to base.

A duplicate is an object with the same kind, name and namespace in more than one cluster's
folder, alike to at least the threshold (shared leaf values / all leaf paths). Moving it puts
what every copy shares in k8s/base and gives each cluster a JSON patch with the rest, placed
before the kustomization's other patches so the build result stays exactly the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml.scalarstring import LiteralScalarString

from fluxops.clusters import kustomization_file
from fluxops.errors import LayoutError
from fluxops.layout.model import Repo, is_flux_kustomization
from fluxops.layout.roundtrip import load_docs, write_docs
from fluxops.layout.secrets_check import is_sops_file
from fluxops.layout.sources import SourceDoc, read_sources
from fluxops.layout.tree import check_root, load, reachable_folders
from fluxops.progname import progname

SKIP_KINDS = {"Secret", "Kustomization"}
SKIP_DIRS = ("flux-system",)


@dataclass
class Member:
    """One copy of a duplicated object: its cluster, file and document."""

    cluster: str
    doc: SourceDoc

    @property
    def rel(self) -> str:
        """The file's path inside its cluster folder."""
        return self.doc.file.split("/", 3)[3]


@dataclass
class Duplicate:
    """An object defined alike in several clusters."""

    kind: str
    name: str
    namespace: str
    members: list[Member]
    similarity: float
    common: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``Kind namespace/name``."""
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"

    @property
    def base_file(self) -> str:
        """Where the shared definition goes."""
        return f"k8s/base/{self.members[0].rel}"


def leaves(value: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], str]:
    """Every leaf of a document as path -> JSON value."""
    if isinstance(value, dict) and value:
        out: dict[tuple[Any, ...], str] = {}
        for k, v in value.items():
            out.update(leaves(v, (*path, k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(leaves(v, (*path, i)))
        return out
    return {path: json.dumps(value, sort_keys=True, default=str)}


def similarity(a: Any, b: Any) -> float:
    """Share of leaf paths that have the same value in both documents."""
    la, lb = leaves(a), leaves(b)
    union = set(la) | set(lb)
    if not union:
        return 1.0
    return sum(1 for p in union if la.get(p) == lb.get(p)) / len(union)


def common(values: list[Any]) -> Any:
    """What all documents share: equal values, and the shared part of mappings and equal-length lists."""
    first = values[0]
    if all(_plain(v) == _plain(first) for v in values[1:]):
        return _plain(first)
    if all(isinstance(v, dict) for v in values):
        out = {}
        for key in first:
            if all(key in v for v in values):
                part = common([v[key] for v in values])
                if part is not _NONE:
                    out[key] = part
        return out if out else _NONE
    if all(isinstance(v, list) and len(v) == len(first) for v in values) and all(
        isinstance(x, dict) for v in values for x in v
    ):
        items = [common([v[i] for v in values]) for i in range(len(first))]
        return items if all(i is not _NONE for i in items) else _NONE
    return _NONE


_NONE: Any = object()


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _escape(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def json_patch(base: Any, target: Any, path: str = "") -> list[dict[str, Any]]:
    """RFC 6902 operations that turn ``base`` into ``target``."""
    if _plain(base) == _plain(target):
        return []
    if isinstance(base, dict) and isinstance(target, dict):
        ops: list[dict[str, Any]] = []
        for key in base:
            if key not in target:
                ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        for key, value in target.items():
            sub = f"{path}/{_escape(key)}"
            if key not in base:
                ops.append({"op": "add", "path": sub, "value": _plain(value)})
            else:
                ops.extend(json_patch(base[key], value, sub))
        return ops
    if isinstance(base, list) and isinstance(target, list) and len(base) == len(target):
        return [
            op
            for i, (b, t) in enumerate(zip(base, target, strict=True))
            for op in json_patch(b, t, f"{path}/{i}")
        ]
    return [{"op": "replace", "path": path, "value": _plain(target)}]


def _candidates(repo: Repo) -> dict[tuple[str, str, str], list[Member]]:
    sources = read_sources(repo.root, [repo.clusters_dir])
    groups: dict[tuple[str, str, str], list[Member]] = {}
    for file, docs in sorted(sources.docs.items()):
        parts = file.split("/")
        if len(parts) < 5 or parts[3] in SKIP_DIRS or is_sops_file(file):
            continue
        for doc in docs:
            if not isinstance(doc.data, dict) or doc.kind in SKIP_KINDS or is_flux_kustomization(doc.data):
                continue
            if not doc.data.get("apiVersion") or not doc.name:
                continue
            groups.setdefault((doc.kind, doc.name, doc.namespace), []).append(Member(parts[2], doc))
    return groups


def find_duplicates(root: Path, *, threshold: float = 0.8) -> list[Duplicate]:
    """Objects that stand, alike, in more than one cluster's overlays."""
    repo = check_root(root)
    found = []
    for (kind, name, namespace), members in sorted(_candidates(repo).items()):
        clusters = {m.cluster for m in members}
        if len(clusters) < 2 or len(clusters) != len(members):
            continue
        docs = [m.doc.data for m in members]
        score = min(similarity(a, b) for i, a in enumerate(docs) for b in docs[i + 1 :])
        if score < threshold or len({str(d.get("apiVersion")) for d in docs}) > 1:
            continue
        shared = common(docs)
        found.append(Duplicate(kind, name, namespace, members, score, shared if shared is not _NONE else {}))
    return found


def describe(dups: list[Duplicate]) -> str:
    """The audit report: each duplicate, where it stands, and the proposed move."""
    if not dups:
        return "no duplicate definitions across cluster overlays"
    lines = [f"{len(dups)} duplicate definition(s) across cluster overlays:"]
    for dup in dups:
        lines.append(f"  {dup.label}: {dup.similarity:.0%} alike")
        for m in dup.members:
            ops = json_patch(dup.common, m.doc.data)
            what = ", ".join(op["path"] for op in ops) or "nothing (identical)"
            lines.append(f"    {m.cluster}: {m.doc.file}:{m.doc.line}; patch: {what}")
        lines.append(f"    proposal: move the shared definition to {dup.base_file} and patch per cluster")
    lines.append(f"run `{progname()} layout.audit --apply` to do it")
    return "\n".join(lines)


def snapshot(root: Path) -> dict[str, dict[str, list[str]]]:
    """Every cluster's phases and the objects each builds to (sorted, canonical JSON)."""
    tree = load(root)
    out: dict[str, dict[str, list[str]]] = {}
    for name, cluster in tree.clusters.items():
        out[name] = {p.name: sorted(json.dumps(o, sort_keys=True) for o in p.objects) for p in cluster.phases}
        out[name]["(phases)"] = sorted(json.dumps(p.obj, sort_keys=True) for p in cluster.phases)
    return out


class _Backup:
    """Files as they were before a change, to put back if the change does not hold."""

    def __init__(self) -> None:
        self.saved: dict[Path, bytes | None] = {}

    def touch(self, path: Path) -> None:
        if path not in self.saved:
            self.saved[path] = path.read_bytes() if path.exists() else None

    def restore(self) -> None:
        for path, data in self.saved.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        for path in sorted(self.saved, key=lambda p: len(p.parts), reverse=True):
            parent = path.parent
            while parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


def _prune(doc: Any, keep: Any) -> None:
    """Cut a round-trip document down to ``keep`` in place (comments on kept parts survive)."""
    if isinstance(doc, dict) and isinstance(keep, dict):
        for key in list(doc):
            if key not in keep:
                del doc[key]
            else:
                _prune(doc[key], keep[key])
    elif isinstance(doc, list) and isinstance(keep, list):
        for item, kept in zip(doc, keep, strict=False):
            _prune(item, kept)


def _listing(folder: Path, stop: Path, file: Path) -> tuple[Path, Any, int] | None:
    """The kustomization file (from ``folder`` up to ``stop``) whose resources list ``file``."""
    for current in [folder, *folder.parents]:
        kfile = kustomization_file(current)
        if kfile is not None:
            docs = load_docs(kfile)
            resources = docs[0].get("resources") if docs and isinstance(docs[0], dict) else None
            for i, ref in enumerate(resources or []):
                if isinstance(ref, str) and (current / ref).resolve() == file.resolve():
                    return kfile, docs, i
        if current == stop:
            break
    return None


def _rel(target: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(target, start)).as_posix()


def _users(repo: Repo, folder: Path) -> set[str]:
    """Clusters whose phases build from ``folder``."""
    target = folder.resolve()
    tree = load(repo.root)
    users = set()
    for name, cluster in tree.clusters.items():
        seen: dict[Path, str] = {}
        for phase in cluster.phases:
            if phase.folder is not None:
                reachable_folders(phase.folder, seen)
        if target in seen:
            users.add(name)
    return users


def _base_dir(repo: Repo, dup: Duplicate, made: dict[Path, set[str]]) -> Path:
    """A base folder read by exactly the duplicate's clusters (made anew if need be)."""
    members = {m.cluster for m in dup.members}
    first = (repo.root / dup.base_file).parent
    for folder in (first, first / "-".join(sorted(members))):
        if folder in made:
            if made[folder] == members:
                return folder
            continue
        if kustomization_file(folder) is None or _users(repo, folder) == members:
            made[folder] = members
            return folder
    raise LayoutError(f"{dup.label}: no base folder is shared by exactly {', '.join(sorted(members))}")


def _add_to_base(folder: Path, file_name: str, doc: Any, backup: _Backup) -> None:
    base_file = folder / file_name
    backup.touch(base_file)
    docs = load_docs(base_file) if base_file.exists() else []
    write_docs(base_file, [d for d in docs if d is not None] + [doc])
    kfile = kustomization_file(folder) or folder / "kustomization.yaml"
    backup.touch(kfile)
    if kfile.exists():
        kdocs = load_docs(kfile)
        resources = kdocs[0].setdefault("resources", [])
        if file_name not in resources:
            resources.append(file_name)
        write_docs(kfile, kdocs)
    else:
        kfile.write_text(
            "# Shared by several clusters (moved here by `invoke layout.audit --apply`);\n"
            "# each cluster patches its own values.\n"
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources:\n  - {file_name}\n",
            encoding="utf-8",
        )


def _index_of(docs: list[Any], dup: Duplicate) -> int:
    """Where the duplicated object is in a file's documents (files change as objects move)."""
    for i, doc in enumerate(docs):
        if isinstance(doc, dict) and doc.get("kind") == dup.kind:
            md = doc.get("metadata") or {}
            if md.get("name") == dup.name and (md.get("namespace") or "") == dup.namespace:
                return i
    raise LayoutError(f"{dup.label}: no longer found in its file; run the audit again")


def _move(repo: Repo, dup: Duplicate, backup: _Backup, made: dict[Path, set[str]]) -> str:
    folder = _base_dir(repo, dup, made)
    first = dup.members[0]
    docs = load_docs(repo.root / first.doc.file)
    shared = docs[_index_of(docs, dup)]
    _prune(shared, dup.common)
    _add_to_base(folder, Path(first.doc.file).name, shared, backup)
    for member in dup.members:
        path = repo.root / member.doc.file
        cluster_dir = repo.clusters_dir / member.cluster
        found = _listing(path.parent, cluster_dir, path)
        if found is None:
            raise LayoutError(
                f"{dup.label}: no kustomization.yaml in {member.cluster} lists {member.doc.file}"
            )
        kpath, kdocs, index = found
        backup.touch(kpath)
        backup.touch(path)
        file_docs = load_docs(path)
        moved = _index_of(file_docs, dup)
        rest = [d for i, d in enumerate(file_docs) if i != moved and d is not None]
        kdoc = kdocs[0]
        resources = kdoc["resources"]
        listed = any(
            isinstance(r, str) and (kpath.parent / r).resolve() == folder.resolve() for r in resources
        )
        if rest:
            write_docs(path, rest)
            if not listed:
                resources.insert(index + 1, _rel(folder, kpath.parent))
        else:
            path.unlink()
            if listed:
                del resources[index]
            else:
                resources[index] = _rel(folder, kpath.parent)
        ops = json_patch(dup.common, member.doc.data)
        if ops:
            target = {"kind": dup.kind, "name": dup.name}
            if dup.namespace:
                target["namespace"] = dup.namespace
            text = yaml.safe_dump(ops, sort_keys=False, default_flow_style=False)
            kdoc.setdefault("patches", []).insert(0, {"target": target, "patch": LiteralScalarString(text)})
        write_docs(kpath, kdocs)
    where = repo.rel(folder / Path(first.doc.file).name)
    return f"{dup.label}: now in {where}, patched in " + ", ".join(m.cluster for m in dup.members)


def apply(root: Path, dups: list[Duplicate]) -> list[str]:
    """Move each duplicate to base; one whose move changes any cluster's build is undone and reported."""
    repo = check_root(root)
    before = snapshot(repo.root)
    made: dict[Path, set[str]] = {}
    done = []
    for dup in sorted(dups, key=lambda d: -len(d.members)):
        backup = _Backup()
        try:
            line = _move(repo, dup, backup, made)
            after = snapshot(repo.root)
        except Exception:
            backup.restore()
            raise
        if after != before:
            backup.restore()
            for folder in [f for f in made if not f.exists()]:
                del made[folder]
            changed = [
                f"{c}/{p}" for c in before for p in before[c] if before[c][p] != after.get(c, {}).get(p)
            ]
            done.append(f"{dup.label}: not moved, it would change " + ", ".join(changed or ["the phases"]))
            continue
        done.append(line)
    return done
