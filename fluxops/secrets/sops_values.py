"""What sops encrypts in a document and what it leaves in clear, and which files are secrets by name."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from fluxops.secrets.encrypted import ENC_PREFIX

SOPS_NAME_SUFFIXES = (".sops.yaml", ".sops.yml")


SECRET_SECTIONS = ("data", "stringData")


def left_in_clear(value: Any) -> bool:
    """True for a value sops never encrypts: an empty string, null, an empty map or list."""
    return value is None or (isinstance(value, str | dict | list) and len(value) == 0)


def _leaves(node: Any, trail: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*trail, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*trail, index))
    else:
        yield trail, node


def _template_expression(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def has_values(section: Any, *, templated: bool = False) -> bool:
    """True if a data/stringData section holds a value sops would encrypt (with ``templated``: a literal)."""
    return any(
        not left_in_clear(value) and not (templated and _template_expression(value))
        for _, value in _leaves(section)
    )


def plaintext_secret(document: Any, *, templated: bool = False) -> bool:
    """True for a ``kind: Secret`` with values and no sops metadata."""
    if not isinstance(document, dict) or document.get("kind") != "Secret":
        return False
    if isinstance(document.get("sops"), dict):
        return False
    return any(has_values(document.get(key), templated=templated) for key in SECRET_SECTIONS)


def is_sops_name(name: str) -> bool:
    """True for a file named ``*.sops.yaml``/``*.sops.yml``: the convention says it must be encrypted."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(SOPS_NAME_SUFFIXES) and base not in SOPS_NAME_SUFFIXES


def sops_suffix(name: str) -> str:
    return next(suffix for suffix in SOPS_NAME_SUFFIXES if name.endswith(suffix))


def _picker(meta: dict[str, Any]) -> Callable[[str], bool | None]:
    """How sops picked encrypted keys: True = encrypt the subtree, False = leave it, None = inherit."""
    if meta.get("encrypted_regex"):
        pattern = re.compile(str(meta["encrypted_regex"]))
        return lambda key: True if pattern.search(key) else None
    if meta.get("unencrypted_regex"):
        pattern = re.compile(str(meta["unencrypted_regex"]))
        return lambda key: False if pattern.search(key) else None
    if meta.get("encrypted_suffix"):
        suffix = str(meta["encrypted_suffix"])
        return lambda key: True if key.endswith(suffix) else None
    suffix = str(meta.get("unencrypted_suffix") or "_unencrypted")
    return lambda key: False if key.endswith(suffix) else None


def plaintext_values(document: dict[str, Any], meta: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """Key paths of values in clear that the document's own sops rule says are encrypted."""
    picks = _picker(meta)
    inside = not (meta.get("encrypted_regex") or meta.get("encrypted_suffix"))

    def walk_node(node: Any, encrypted: bool, trail: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        if isinstance(node, dict):
            for key, value in node.items():
                decided = picks(str(key))
                yield from walk_node(value, encrypted if decided is None else decided, (*trail, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk_node(value, encrypted, (*trail, index))
        elif encrypted and not left_in_clear(node) and not str(node).startswith(ENC_PREFIX):
            yield trail

    body = {k: v for k, v in document.items() if k != "sops"}
    yield from walk_node(body, inside, ())


def dotted_path(trail: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in trail).lstrip(".")
