"""Vendor a chart's CustomResourceDefinitions verbatim into one file of the crds phase.

    .venv/bin/python scripts/refresh_crds.py --out k8s/base/crds/traefik-crds.yaml \\
        --group traefik.io --source "github.com/traefik/traefik-helm-chart@<commit> traefik/crds/" \\
        traefik-38.0.2.tgz
    .venv/bin/python scripts/refresh_crds.py --out k8s/base/crds/metallb-crds.yaml \\
        --namespace metallb-system --source "..." charts/metallb/charts/crds/templates/crds.yaml

Each input is a Helm chart archive (``.tgz``/``.tar.gz``: every YAML file with a ``crds`` folder in
its path, i.e. a chart's or a subchart's ``crds/`` and a ``crds`` subchart's ``templates/``) or a
YAML file. Every CustomResourceDefinition document found (of the ``--group`` groups, when given) is
written as upstream wrote it, byte for byte, with one change: the annotation
``kustomize.toolkit.fluxcd.io/prune: disabled`` added to its metadata, so that Flux never deletes
a CRD (and with it every resource of its kind) when the file or the phase goes away. Helm's
``{{ .Release.Namespace }}`` is rendered as ``--namespace``; any other template directive is refused.

``--check`` writes nothing and exits 1 when the file is not what the inputs give (for CI).
"""

from __future__ import annotations

import argparse
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PRUNE_KEY = "kustomize.toolkit.fluxcd.io/prune"
PRUNE_VALUE = "disabled"
NAMESPACE_TEMPLATE = re.compile(r"\{\{-?\s*\.Release\.Namespace\s*-?\}\}")
TEMPLATE = re.compile(r"\{\{.*?\}\}")
SEPARATOR = re.compile(r"^---[ \t]*(#.*)?$")
YAML_SUFFIXES = (".yaml", ".yml")
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz")


class RefreshError(Exception):
    """Bad input: the message names the file (and line) and what to do."""


@dataclass(frozen=True)
class Document:
    """One YAML document of an input file: its text as written and where it starts."""

    text: str
    origin: str
    line: int


def split_documents(text: str, origin: str) -> list[Document]:
    """The documents of ``text``, split at ``---`` lines as kustomize's kio splits them."""
    documents: list[Document] = []
    lines = text.splitlines(keepends=True)
    start, current = 1, []
    for number, line in enumerate(lines, start=1):
        if SEPARATOR.match(line.rstrip("\r\n")):
            documents.append(Document("".join(current), origin, start))
            start, current = number + 1, []
        else:
            current.append(line)
    documents.append(Document("".join(current), origin, start))
    return [d for d in documents if d.text.strip()]


def read_inputs(paths: list[Path]) -> list[tuple[str, str]]:
    """``(origin, text)`` of every YAML file an input gives, in the order given (archives sorted)."""
    found: list[tuple[str, str]] = []
    for path in paths:
        if not path.is_file():
            raise RefreshError(f"{path}: no such file (give a chart archive .tgz or a CRD YAML file)")
        if path.name.endswith(ARCHIVE_SUFFIXES):
            found.extend(_archive_files(path))
        else:
            found.append((str(path), path.read_text(encoding="utf-8")))
    return found


def _archive_files(path: Path) -> list[tuple[str, str]]:
    try:
        with tarfile.open(path, "r:*") as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.isfile() and m.name.endswith(YAML_SUFFIXES) and "crds" in Path(m.name).parts[:-1]
            ]
            files = []
            for member in sorted(members, key=lambda m: m.name):
                handle = archive.extractfile(member)
                if handle is not None:
                    files.append((f"{path}:{member.name}", handle.read().decode("utf-8")))
    except tarfile.TarError as error:
        raise RefreshError(f"{path}: not a chart archive ({error})") from error
    if not files:
        raise RefreshError(f"{path}: no YAML file under a crds/ folder in this chart archive")
    return files


def render(document: Document, namespace: str | None) -> str:
    """The document with ``{{ .Release.Namespace }}`` rendered; other templates are errors."""
    lines = document.text.splitlines(keepends=True)
    for offset, line in enumerate(lines):
        if NAMESPACE_TEMPLATE.search(line):
            if namespace is None:
                raise RefreshError(
                    f"{document.origin}:{document.line + offset}: {{{{ .Release.Namespace }}}} needs "
                    "--namespace (the HelmRelease's target namespace)"
                )
            lines[offset] = NAMESPACE_TEMPLATE.sub(namespace, line)
        directive = TEMPLATE.search(lines[offset])
        if directive:
            raise RefreshError(
                f"{document.origin}:{document.line + offset}: Helm template directive "
                f"{directive.group(0)!r}: only {{{{ .Release.Namespace }}}} is rendered; "
                "give the chart's rendered CRDs instead"
            )
    return "".join(lines)


def annotate(text: str, where: str) -> str:
    """``text`` (one CRD document) with the prune annotation added to its metadata, nothing else changed."""
    lines = text.splitlines(keepends=True)
    top = re.compile(r"^metadata:\s*(#.*)?$")
    meta = next((i for i, line in enumerate(lines) if top.match(line.rstrip("\r\n"))), None)
    if meta is None:
        raise RefreshError(f"{where}: no block 'metadata:' at the top level of this CRD")
    block = _child_lines(lines, meta, 0)
    if not block:
        raise RefreshError(f"{where}: the CRD's metadata is empty")
    indent = _indent(lines[block[0]])
    annotations = next((i for i in block if re.match(rf"^ {{{indent}}}annotations:", lines[i])), None)
    newline = "\r\n" if lines[meta].endswith("\r\n") else "\n"
    if annotations is None:
        insert = [
            f"{' ' * indent}annotations:{newline}",
            f"{' ' * indent * 2}{PRUNE_KEY}: {PRUNE_VALUE}{newline}",
        ]
        return "".join([*lines[: meta + 1], *insert, *lines[meta + 1 :]])
    if lines[annotations].split(":", 1)[1].split("#", 1)[0].strip():
        raise RefreshError(f"{where}: metadata.annotations is written inline; write it as a block mapping")
    children = _child_lines(lines, annotations, indent)
    child_indent = _indent(lines[children[0]]) if children else indent * 2
    line = f"{' ' * child_indent}{PRUNE_KEY}: {PRUNE_VALUE}{newline}"
    return "".join([*lines[: annotations + 1], line, *lines[annotations + 1 :]])


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _child_lines(lines: list[str], parent: int, parent_indent: int) -> list[int]:
    """Indexes of the content lines of the block under ``lines[parent]`` (comments and blanks skipped)."""
    children = []
    for i in range(parent + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _indent(lines[i]) <= parent_indent:
            break
        children.append(i)
    return children


def vendored_crds(
    inputs: list[tuple[str, str]], groups: list[str], namespace: str | None
) -> list[tuple[str, dict[str, Any]]]:
    """``(annotated text, object)`` of every CRD of ``groups`` (all when empty) in the inputs."""
    crds: list[tuple[str, dict[str, Any]]] = []
    for origin, text in inputs:
        for document in split_documents(text, origin):
            rendered = render(document, namespace)
            where = f"{document.origin}:{document.line}"
            try:
                obj = yaml.safe_load(rendered)
            except yaml.YAMLError as error:
                raise RefreshError(f"{where}: not valid YAML ({error})") from error
            if not isinstance(obj, dict) or obj.get("kind") != "CustomResourceDefinition":
                continue
            if groups and (obj.get("spec") or {}).get("group") not in groups:
                continue
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            if annotations.get(PRUNE_KEY) == PRUNE_VALUE:
                crds.append((rendered, obj))
                continue
            annotated = annotate(rendered, where)
            metadata = {**obj["metadata"], "annotations": {**annotations, PRUNE_KEY: PRUNE_VALUE}}
            expected = {**obj, "metadata": metadata}
            if yaml.safe_load(annotated) != expected:
                raise RefreshError(f"{where}: could not add the annotation without changing the CRD")
            crds.append((annotated, expected))
    return crds


def output_text(crds: list[tuple[str, dict[str, Any]]], source: str) -> str:
    """The vendored file: a header naming the source, then each CRD document."""
    names = ", ".join(obj["metadata"]["name"] for _, obj in crds)
    header = (
        "# Generated by scripts/refresh_crds.py: do not edit, run the script again when the chart moves.\n"
        f"# Source: {source}\n"
        f"# CRDs: {names}\n"
        "# Each is upstream's text unchanged but for the annotation "
        f"{PRUNE_KEY}: {PRUNE_VALUE} (Flux never deletes them).\n"
    )
    body = "---\n".join(text if text.endswith("\n") else text + "\n" for text, _ in crds)
    return f"{header}---\n{body}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="chart archives (.tgz) or CRD YAML files")
    parser.add_argument("--out", type=Path, required=True, help="the vendored file to write")
    parser.add_argument("--source", default="", help="where the inputs come from: repository@commit path")
    parser.add_argument("--group", action="append", default=[], help="keep only CRDs of this API group")
    parser.add_argument("--namespace", help="renders {{ .Release.Namespace }} (the release's namespace)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when --out differs")
    args = parser.parse_args(argv)
    try:
        crds = vendored_crds(read_inputs(args.inputs), args.group, args.namespace)
        if not crds:
            raise RefreshError(f"{', '.join(map(str, args.inputs))}: no CustomResourceDefinition found")
    except RefreshError as error:
        print(f"refresh_crds: {error}", file=sys.stderr)
        return 2
    text = output_text(crds, args.source or " ".join(map(str, args.inputs)))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"refresh_crds: {args.out} differs from what the inputs give", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {len(crds)} CRDs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
