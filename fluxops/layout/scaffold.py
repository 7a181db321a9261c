"""``layout.new-cluster``: a new cluster's overlay tree, copied from an existing cluster."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fluxops.clusters import KUSTOMIZATION_FILES
from fluxops.errors import LayoutError
from fluxops.files import atomic_write, file_mode
from fluxops.layout.model import DNS_LABEL, Repo
from fluxops.layout.roundtrip import dump_like, load_docs
from fluxops.layout.secrets_check import is_sops_file
from fluxops.layout.site_answers import Answers, Asker, missing_message, pool_entries
from fluxops.layout.site_answers import answers as site_answers
from fluxops.layout.site_values import FIELDS, SiteValue, is_under, read_site_values, rewrite_line
from fluxops.layout.sources import YAML_SUFFIXES
from fluxops.layout.tree import load
from fluxops.progname import progname
from fluxops.yamlstyle import round_trip

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
    changes: list[str] = field(default_factory=list)  # "file:line: old -> new", one per site value set
    kept: list[SiteValue] = field(default_factory=list)  # template site values left as they were
    checked: bool = False  # --check: nothing was written


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


def pool_addresses(address: str | Sequence[str]) -> list[str]:
    """The MetalLB pool entries for ``--address``: a single address becomes a /32 (or /128)."""
    return pool_entries(address)


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
        f"{progname()} secrets.new --cluster {cluster} --name {name} --namespace {namespace} {literals} "
        f"--dest k8s/clusters/{cluster}/{rel}"
    )
    return {
        "file": f"k8s/clusters/{cluster}/{rel}",
        "name": name,
        "namespace": namespace,
        "keys": keys,
        "command": command,
    }


def _copied(file: str, template: str) -> bool:
    """True when the template's ``file`` is copied to the new cluster (not an app, not a SOPS file)."""
    if not is_under(file, template):
        return False
    rel = PurePosixPath(file).relative_to(template)
    return rel.parts[0] != APPS and not is_sops_file(rel.name)


def _line_edits(copied: list[SiteValue], answers: Answers) -> dict[str, dict[int, dict[str, str]]]:
    """file -> line -> {old: new}: where each given value goes in the template's files."""
    edits: dict[str, dict[int, dict[str, str]]] = {}
    for value in copied:
        new = answers.new(value.field, value.value)
        if value.field != "address_pool" and new is not None and value.line:
            edits.setdefault(value.file, {}).setdefault(value.line, {})[value.value] = new
    return edits


def _apply_lines(
    text: str, edits: dict[int, dict[str, str]]
) -> tuple[str, list[tuple[int, str, str]], list[int]]:
    """``text`` with the edits made: (new text, (line, old, new) done, lines where nothing matched)."""
    lines = text.splitlines(keepends=True)
    done, failed = [], []
    for number, mapping in sorted(edits.items()):
        new = rewrite_line(lines[number - 1], mapping) if 0 < number <= len(lines) else None
        if new is None:
            failed.append(number)
            continue
        ending = lines[number - 1][len(lines[number - 1].rstrip("\r\n")) :]
        lines[number - 1] = new.rstrip("\r\n") + ending
        done += [(number, old, value) for old, value in mapping.items()]
    return "".join(lines), done, failed


@dataclass
class _Plan:
    """The new cluster's files, in memory until every one of them is ready."""

    files: dict[Path, tuple[bytes, int]] = field(default_factory=dict)

    def add(self, target: Path, data: str | bytes, mode: int) -> None:
        self.files[target] = (data.encode() if isinstance(data, str) else data, mode)


def _write(plan: _Plan, clusters_dir: Path, dst: Path, mode: int) -> None:
    """Every file into a hidden folder next to ``dst``, then that folder renamed to ``dst`` at once."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".new", dir=clusters_dir))
    try:
        for target, (data, file_mode) in plan.files.items():
            atomic_write(tmp / target.relative_to(dst), data, mode=file_mode)
        os.chmod(tmp, mode)
        if dst.exists():
            raise LayoutError(f"k8s/clusters/{dst.name} appeared while scaffolding; nothing written")
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def new_cluster(
    root: Path,
    name: str,
    *,
    like: str = "lab",
    address: str | Sequence[str] | None = None,
    values: Mapping[str, Sequence[str]] | None = None,
    ask: Asker | None = None,
    require_all: bool = False,
    check: bool = False,
) -> Scaffold:
    """Copy ``like``'s overlays to k8s/clusters/NAME with the new cluster's site values.

    Phase files point at the new folder and apps is empty. ``values`` maps site fields
    (``fluxops.layout.site_values.FIELDS``) to option values (``NEW`` or ``OLD=NEW``), ``address``
    is the MetalLB pool. A template value given none is asked with ``ask``; without ``ask`` it is
    listed in a LayoutError with ``require_all``, else kept (``Scaffold.kept``) for layout.validate
    to flag where it contradicts the new cluster. With ``check`` nothing is written.

    SOPS files are not copied (they are encrypted to ``like``'s key): their resources entries are
    dropped, and a note per secret gives the command that creates it for the new cluster. The
    files are written to a hidden folder renamed into place at the end: an error leaves nothing.
    """
    repo = Repo(root.resolve())
    check_name(repo, name, like)
    given = {k: list(v) for k, v in (values or {}).items()}
    if address:
        given["address_pool"] = pool_entries(address)
    tree = load(repo.root, like)
    template = tree.rel(repo.clusters_dir / like)
    found = read_site_values(tree, tree.clusters[like])
    copied = [v for v in found if _copied(v.file, template)]
    answers = site_answers(name, like, copied, given, ask)
    if answers.missing and require_all:
        raise LayoutError(missing_message(name, like, answers.missing))
    result = Scaffold(name, checked=check)
    result.notes += answers.unused
    if tree.findings.errors:
        result.notes.append(
            f"{like} has validate errors: site values of phases that do not build were not read"
        )
    pool = next(iter((answers.mapping.get("address_pool") or {}).values()), None)
    plan = _plan(repo, name, like, answers, copied, pool.split(",") if pool else None, result)
    for value in found:
        if not _copied(value.file, template) and not is_under(value.file, f"{template}/{APPS}"):
            result.notes.append(
                f"{like}'s {FIELDS[value.field].what} {value.value} is set in {value.at}, shared with other "
                f"clusters: override it in k8s/clusters/{name} if {name} needs another"
            )
    if not check:
        _write(plan, repo.clusters_dir, repo.clusters_dir / name, file_mode(repo.clusters_dir / like, 0o755))
    result.written = [repo.rel(target) for target in plan.files]
    _add_notes(result, name)
    return result


def _plan(
    repo: Repo,
    name: str,
    like: str,
    answers: Answers,
    copied: list[SiteValue],
    pool: list[str] | None,
    result: Scaffold,
) -> _Plan:
    """Every file of the new cluster with its content and mode, and what the result reports."""
    src, dst = repo.clusters_dir / like, repo.clusters_dir / name
    old, new = f"clusters/{like}/", f"clusters/{name}/"
    edits = _line_edits(copied, answers)
    plan = _Plan()
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
    for path in files:
        rel = path.relative_to(src)
        if rel.parts[0] == APPS or is_sops_file(path.name):
            continue
        target, mode = dst / rel, file_mode(path)
        if path.suffix not in YAML_SUFFIXES:
            plan.add(target, path.read_bytes(), mode)
            continue
        source = path.read_text(encoding="utf-8")
        text, done, failed = _apply_lines(source, edits.get(repo.rel(path), {}))
        result.changes += [f"{repo.rel(target)}:{n}: {o} -> {v}" for n, o, v in done]
        result.notes += [
            f"{repo.rel(target)}:{n}: a site value of {like} there was not replaced; set it by hand"
            for n in failed
        ]
        docs = list(round_trip().load_all(text))
        changed = old in text or f"clusters/{like}\n" in text
        for doc in docs:
            _rewrite(doc, old, new)
            _rewrite(doc, f"clusters/{like}", f"clusters/{name}")
            if path.name in KUSTOMIZATION_FILES and _drop_refs(doc, dropped.get(path.parent, set())):
                changed = True
            if pool and isinstance(doc, dict) and doc.get("kind") == "IPAddressPool":
                before = list(doc["spec"]["addresses"])
                doc["spec"]["addresses"] = pool
                result.changes.append(
                    f"{repo.rel(target)}: addresses {', '.join(before)} -> {', '.join(pool)}"
                )
                changed = pool_set = True
        plan.add(target, dump_like(text, docs) if changed else text, mode)
    plan.add(dst / APPS / "kustomization.yaml", EMPTY_APPS.format(name=name), 0o644)
    if pool and not pool_set:
        result.notes.append(f"{like} has no IPAddressPool, so --address was not used")
    for value in copied:
        is_set = bool(pool) if value.field == "address_pool" else answers.new(value.field, value.value)
        if not is_set:
            at = f"{repo.rel(dst / PurePosixPath(value.file).relative_to(repo.rel(src)))}:{value.line}"
            result.kept.append(value)
            result.notes.append(
                f"{at}: {like}'s {FIELDS[value.field].what} {value.value} kept (give "
                f"{FIELDS[value.field].option}); layout.validate flags it where it contradicts {name}"
            )
    return plan


def _add_notes(result: Scaffold, name: str) -> None:
    result.notes.append(
        f"create the age key and .sops.yaml rule first: {progname()} keys.generate --cluster {name}"
    )
    for secret in result.omitted_secrets:
        result.notes.append(
            f"secret {secret['namespace']}/{secret['name']} not copied; create it: {secret['command']}"
        )
    result.notes.append(
        f"add the cluster's hosts to the inventory, then bootstrap with --path ./k8s/clusters/{name}"
    )
