"""YAML and JSON files as Ansible reads them: JSON first, else YAML 1.1, with the line of every key.

Ansible's loader is PyYAML's safe loader, so the same text gives the same values: ``yes``/``no``/
``on``/``off`` are booleans, ``0644`` is 420, ``1:30`` is 90. Mappings come back as :class:`LineMap`
(a dict that knows the line of each key). ``!unsafe`` gives the plain value (fluxops never
templates); ``!vault`` gives a :class:`Vault` marker, refused where it is used; ``!secret`` (a fluxops
tag, unknown to Ansible) gives a :class:`~fluxops.masking.Secret`. A key written twice in one
mapping is refused (Ansible warns and keeps the last).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fluxops.errors import InventoryError
from fluxops.masking import Secret

try:
    _BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # libyaml's parser, Python constructors
except AttributeError:  # PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader

_MERGE_TAG = "tag:yaml.org,2002:merge"
VAULT_HEADER = "$ANSIBLE_VAULT;"


class LineMap(dict[Any, Any]):
    """A mapping read from a file, with the 1-based line of the mapping and of each key."""

    line: int | None = None
    lines: dict[Any, int]

    def __init__(self, *args: Any, line: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = line
        self.lines = {}

    def line_of(self, key: Any) -> int | None:
        """The line of ``key``, else of the mapping itself."""
        return self.lines.get(key, self.line)


@dataclass(frozen=True)
class Vault:
    """A value encrypted with ansible-vault (``!vault``); fluxops cannot read it yet."""

    line: int | None


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """PyYAML's safe loader (YAML 1.1) plus Ansible's tags and line-numbered mappings."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Any:
    data = LineMap(line=node.start_mark.line + 1)
    yield data
    own = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
    loader.flatten_mapping(node)
    explicit: set[Any] = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value, not a list or mapping", key_node.start_mark
            ) from None
        if id(key_node) in own:
            if key in explicit:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in this mapping; each key may appear once",
                    key_node.start_mark,
                )
            explicit.add(key)
        data[key] = loader.construct_object(value_node, deep=False)
        data.lines[key] = line


def _construct_unsafe(loader: _Loader, node: yaml.Node) -> Any:
    """The value as if untagged (resolved as a plain scalar, as Ansible does)."""
    copied = copy.copy(node)
    copied.tag = loader.resolve(type(node), node.value, (True, False))
    return loader.construct_object(copied, deep=True)


def _construct_vault(loader: _Loader, node: yaml.Node) -> Vault:
    return Vault(line=node.start_mark.line + 1)


def _construct_secret(loader: _Loader, node: yaml.Node) -> Secret:
    return Secret(str(loader.construct_scalar(node)))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("!unsafe", _construct_unsafe)
_Loader.add_constructor("!vault", _construct_vault)
_Loader.add_constructor("!vault-encrypted", _construct_vault)
_Loader.add_constructor("!secret", _construct_secret)


def _json_object(pairs: dict[str, Any]) -> Any:
    if set(pairs) == {"__ansible_unsafe"}:
        return pairs["__ansible_unsafe"]
    if set(pairs) == {"__ansible_vault"}:
        return Vault(line=None)
    return LineMap(pairs)


def read_text(path: Path) -> str:
    """The file's text, or an InventoryError that says why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(
            f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", path=str(path)
        ) from None
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror}", path=str(path)) from None
    if text.startswith(VAULT_HEADER):
        raise InventoryError(
            "vault-encrypted files are not supported yet; keep this file decrypted "
            "(`ansible-vault decrypt FILE`) or move its secrets elsewhere",
            path=str(path),
            line=1,
        )
    return text


def parse(text: str, path: Path) -> Any:
    """The data of ``text`` (from ``path``): JSON if it is JSON, else YAML 1.1, as Ansible loads files."""
    try:
        return json.loads(text, object_hook=_json_object)
    except ValueError:
        pass
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or str(exc)
        if (
            isinstance(exc, yaml.constructor.ConstructorError)
            and "could not determine a constructor" in problem
        ):
            problem = f"{problem}; Ansible's YAML knows only YAML 1.1's own tags, !unsafe and !vault"
        raise InventoryError(
            f"YAML error: {problem}", path=str(path), line=mark.line + 1 if mark is not None else None
        ) from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"YAML error: {exc}", path=str(path)) from None


def load(path: Path) -> Any:
    """Read and parse the YAML or JSON file at ``path``."""
    return parse(read_text(path), path)
