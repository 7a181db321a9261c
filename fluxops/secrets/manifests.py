"""Secret manifests and kustomization.yaml files as data: build, read readable parts, reference.

sops leaves every key name, ``metadata`` and the ``sops:`` block readable, so a Secret encrypted to a
key nobody here holds still tells its name, namespace and data key names.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from fluxops.clusters import kustomization_file
from fluxops.errors import SecretsError
from fluxops.files import atomic_write
from fluxops.masking import Secret, reveal
from fluxops.yamlstyle import round_trip

PLACEHOLDER = "REPLACE_ME"
SOPS_SUFFIX = ".sops.yaml"  # what fluxops names a new secret file
SOPS_SUFFIXES = (".sops.yaml", ".sops.yml")  # what it treats as a secret file by name
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def dump(data: Any) -> str:
    """YAML text of a (round-trip) document."""
    buffer = io.StringIO()
    round_trip().dump(data, buffer)
    return buffer.getvalue()


def check_name(name: str, what: str = "name") -> str:
    """A Kubernetes object name (DNS-1123 subdomain) or SecretsError."""
    if not name or len(name) > 253 or not _DNS1123.match(name):
        raise SecretsError(f"invalid {what} {name!r}: use lowercase letters, digits, '-' and '.'")
    return name


@dataclass(frozen=True)
class SecretSpec:
    """A Secret to write: identity, type, labels/annotations and its values (held as Secret)."""

    name: str
    namespace: str
    string_data: dict[str, Secret] = field(default_factory=dict)
    data: dict[str, Secret] = field(default_factory=dict)
    type: str | None = None
    labels: Mapping[str, Any] | None = None
    annotations: Mapping[str, Any] | None = None
    header: str = ""

    def render(self) -> Secret:
        """The plaintext manifest, as a Secret (it carries the values)."""
        doc = CommentedMap()
        doc["apiVersion"] = "v1"
        doc["kind"] = "Secret"
        meta = CommentedMap(name=self.name, namespace=self.namespace)
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        doc["metadata"] = meta
        if self.type:
            doc["type"] = self.type
        if self.data:
            doc["data"] = CommentedMap((k, reveal(v)) for k, v in self.data.items())
        if self.string_data or not self.data:
            doc["stringData"] = CommentedMap((k, reveal(v)) for k, v in self.string_data.items())
        return Secret(self.header + dump(doc))


def parse_values(
    literals: list[str] | None,
    files: list[str] | None,
    envs: list[str] | None = None,
    values: Mapping[str, Secret] | None = None,
) -> tuple[dict[str, Secret], dict[str, Secret]]:
    """The secret's values as (stringData, data); binary files go base64 into data.

    ``literals`` are ``k=v``, ``files`` ``k=PATH``, ``envs`` ``k=ENVVAR`` (read from this process's
    environment) and ``values`` values already read (e.g. from stdin). A key may be given once.
    """
    string_data: dict[str, Secret] = {}
    data: dict[str, Secret] = {}
    given: list[str] = []
    for item in literals or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SecretsError(f"--from-literal needs KEY=VALUE, got {key!r}=...")
        string_data[_check_key(key)] = Secret(value)
        given.append(key)
    for item in envs or []:
        key, sep, variable = item.partition("=")
        if not sep or not variable:
            raise SecretsError(f"--from-env needs KEY=ENVVAR, got {item!r}")
        if variable not in os.environ:
            raise SecretsError(f"--from-env {key}: the environment variable {variable} is not set")
        string_data[_check_key(key)] = Secret(os.environ[variable])
        given.append(key)
    for key, value in (values or {}).items():
        string_data[_check_key(key)] = value
        given.append(key)
    for item in files or []:
        key, sep, path = item.partition("=")
        if not sep:
            key, path = Path(item).name, item
        source = Path(path).expanduser()
        try:
            raw = source.read_bytes()
        except OSError as exc:
            raise SecretsError(f"--from-file {key}: cannot read {source}: {exc.strerror}") from None
        try:
            string_data[_check_key(key)] = Secret(raw.decode())
        except UnicodeDecodeError:
            data[_check_key(key)] = Secret(base64.b64encode(raw).decode())
        given.append(key)
    twice = sorted({key for key in given if given.count(key) > 1})
    if twice:
        raise SecretsError(f"key given twice: {', '.join(twice)}")
    return string_data, data


def _check_key(key: str) -> str:
    if not _DATA_KEY.match(key):
        raise SecretsError(f"invalid secret key {key!r}: use letters, digits, '-', '_' and '.'")
    return key


def leading_comments(text: str) -> str:
    """The plaintext comment block at the top of a file (sops leaves it readable), ``#ENC[`` excluded."""
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#") or line.startswith("#ENC["):
            break
        lines.append(line)
    return "".join(lines)


def readable_spec(
    document: Any, *, fallback_name: str, fallback_namespace: str, header: str = ""
) -> SecretSpec:
    """A placeholder spec with the readable parts of an encrypted (or missing) Secret document."""
    document = document if isinstance(document, dict) else {}
    meta = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    name = str(meta.get("name") or fallback_name)
    namespace = str(meta.get("namespace") or fallback_namespace)
    string_keys = (
        list((document.get("stringData") or {}).keys())
        if isinstance(document.get("stringData"), dict)
        else []
    )
    data_keys = list((document.get("data") or {}).keys()) if isinstance(document.get("data"), dict) else []
    if not string_keys and not data_keys:
        string_keys = ["value"]
    placeholder_b64 = base64.b64encode(PLACEHOLDER.encode()).decode()
    return SecretSpec(
        name=name,
        namespace=namespace,
        string_data={str(k): Secret(PLACEHOLDER) for k in string_keys},
        data={str(k): Secret(placeholder_b64) for k in data_keys},
        type=str(document["type"]) if document.get("type") else None,
        labels=meta.get("labels") if isinstance(meta.get("labels"), dict) else None,
        annotations=meta.get("annotations") if isinstance(meta.get("annotations"), dict) else None,
        header=header,
    )


# -- kustomization.yaml ----------------------------------------------------------------------


def _load_round_trip(path: Path) -> CommentedMap:
    try:
        data = round_trip().load(path.read_text())
    except Exception as exc:
        raise SecretsError(f"{path}: not valid YAML ({exc}); fix it by hand") from None
    if not isinstance(data, dict):
        raise SecretsError(f"{path}: expected a kustomization mapping")
    return data


def resources(path: Path) -> list[str]:
    """The ``resources`` entries of a kustomization file."""
    items = _load_round_trip(path).get("resources") or []
    return [str(item) for item in items]


def kustomizations(tree: Path) -> Iterator[Path]:
    """Every kustomization file under ``tree``, sorted."""
    for folder, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found = kustomization_file(Path(folder))
        if found is not None and found.name in files:
            yield found


def referenced_secret_files(tree: Path) -> list[tuple[Path, Path]]:
    """(secret file, kustomization naming it) for every ``*.sops.yaml`` resource in the tree."""
    found: dict[Path, Path] = {}
    for kustomization in kustomizations(tree):
        for entry in resources(kustomization):
            if entry.endswith(SOPS_SUFFIXES) and "://" not in entry:
                target = Path(os.path.normpath(kustomization.parent / entry))
                found.setdefault(target, kustomization)
    return sorted(found.items())


def kustomization_namespace(path: Path) -> str | None:
    """The ``namespace:`` a kustomization sets for its resources, if any."""
    value = _load_round_trip(path).get("namespace")
    return str(value) if value else None


def nearest_kustomization(folder: Path, stop: Path) -> Path | None:
    """The kustomization file of ``folder`` or its closest parent, not above ``stop``."""
    folder, stop = Path(folder).absolute(), Path(stop).absolute()
    while True:
        found = kustomization_file(folder)
        if found is not None:
            return found
        if folder == stop or stop not in folder.parents:
            return None
        folder = folder.parent


def add_resource(kustomization: Path, target: Path) -> bool:
    """Add ``target`` (relative to the kustomization) to its ``resources``; False if already there."""
    entry = os.path.relpath(target, kustomization.parent).replace(os.sep, "/")
    data = _load_round_trip(kustomization)
    items = data.get("resources")
    if items is None:
        items = CommentedSeq()
        data["resources"] = items
    normalized = {os.path.normpath(str(item)) for item in items}
    if os.path.normpath(entry) in normalized:
        return False
    items.append(entry)
    atomic_write(kustomization, dump(data), mode=kustomization.stat().st_mode & 0o777)
    return True
