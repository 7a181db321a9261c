"""YAML read as kustomize reads it, at libyaml speed.

kustomize (kyaml) reads resources with go-yaml v3: YAML 1.2 core scalars (``yes``/``on`` and ``=``
are strings, ``0755`` and ``0o755`` are 493, ``1:20`` is a string), any tag, anchors that may be
redefined, merge keys, and an error for a key given twice. Each resource then goes through JSON,
so what it applies and prints is JSON values: timestamps become RFC 3339 strings, a whole float
(``1.0``, ``1e3``) becomes an integer. The loaders here give the same values, with line numbers for
the tree's files. PyYAML's libyaml parser does the parsing; a file whose anchors libyaml's composer
refuses (a redefined anchor) is read again by the pure-Python parser.

Flux reads the text of a resource after ``postBuild`` substitution with go-yaml v2 (YAML 1.1
booleans, timestamps kept as written): :class:`SubstitutedLoader`.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import math
import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

try:
    from yaml.cyaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python parser alone
    _CParser = None

_TAG = "tag:yaml.org,2002:"
STR, NULL, BOOL, INT, FLOAT = (f"{_TAG}{t}" for t in ("str", "null", "bool", "int", "float"))
TIMESTAMP, BINARY, MERGE, SEQ, MAP = (f"{_TAG}{t}" for t in ("timestamp", "binary", "merge", "seq", "map"))
# Plain scalars that may be more than a string are resolved by one constructor, as go-yaml does.
_PLAIN = "tag:fluxops,2025:plain"


class YamlSyntaxError(ValueError):
    """A YAML file that does not parse; carries the 1-based line."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


class LineDict(dict):
    """A mapping that remembers the line it starts on and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list):
    """A sequence that remembers the line it starts on and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]


# -- scalars as go-yaml resolves them (resolve.go) ----------------------------------------------

_V3_WORDS: dict[str, tuple[str, Any]] = {
    **dict.fromkeys(("true", "True", "TRUE"), (BOOL, True)),
    **dict.fromkeys(("false", "False", "FALSE"), (BOOL, False)),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), (NULL, None)),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), (FLOAT, math.nan)),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), (FLOAT, math.inf)),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), (FLOAT, -math.inf)),
}
_V2_WORDS: dict[str, tuple[str, Any]] = {
    **_V3_WORDS,
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), (BOOL, True)),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), (BOOL, False)),
}
_WORD_START = frozenset("yYnNtTfFoO~")
_NUMBER_START = frozenset("+-0123456789.")
_GO_INT = re.compile(r"([+-]?)(?:0[xX]([0-9a-fA-F]+)|0[oO]([0-7]+)|0[bB]([01]+)|0([0-7]+)|([0-9]+))")
_YAML_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?")
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?:(?:[Tt]([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[.,]([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2}))"
    r"|(?: +([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:[.,]([0-9]+))?))?"
)


def _go_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)``, else ``ParseUint``; None when neither reads it."""
    m = _GO_INT.fullmatch(text)
    if m is None:
        return None
    sign, hexa, octo, bina, old_octal, decimal = m.groups()
    if hexa:
        value = int(hexa, 16)
    elif octo or old_octal:
        value = int(octo or old_octal, 8)
    elif bina:
        value = int(bina, 2)
    else:
        if len(decimal) > 1 and decimal[0] == "0":
            return None  # 08, 09: not octal, not decimal
        value = int(decimal)
    if sign == "-":
        value = -value
    if -(2**63) <= value < 2**63 or (not sign and value < 2**64):
        return value
    return None


def go_timestamp(text: str) -> str | None:
    """A go-yaml timestamp as JSON prints it (RFC 3339, nanoseconds trimmed); None if not one."""
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        return None
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year or 2000, month)[1]:
        return None
    clock = m.group(4, 5, 6, 7, 8) if m[4] else (*m.group(9, 10, 11, 12), None)
    if clock[0] is None:
        return f"{year:04d}-{month:02d}-{day:02d}T00:00:00Z"
    hour, minute, second = int(clock[0]), int(clock[1]), int(clock[2])
    if hour > 23 or minute > 59 or second > 59:
        return None
    fraction = (clock[3] or "")[:9].ljust(9, "0").rstrip("0")
    zone = clock[4] or "Z"
    if zone != "Z":
        zone_hour, zone_minute = int(zone[1:3]), int(zone[4:6])
        if zone_hour > 24 or zone_minute > 60:
            return None
        offset = zone_hour * 60 + zone_minute
        zone = f"{zone[0]}{offset // 60:02d}:{offset % 60:02d}" if offset else "Z"
    return (
        f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
        f"{'.' + fraction if fraction else ''}{zone}"
    )


def _resolve(text: str, tag: str, words: dict[str, tuple[str, Any]], v2: bool) -> tuple[str, Any]:
    """go-yaml's ``resolve``: the tag and value of a scalar (``tag`` empty when not explicit)."""
    first = text[:1]
    if tag != STR and (first in _NUMBER_START or first in _WORD_START or not text):
        if text in words:
            return words[text]
        if first == ".":
            if _DOT_FLOAT.fullmatch(text):
                return FLOAT, float(text)
        elif first in _NUMBER_START:
            if tag in ("", TIMESTAMP):
                stamp = go_timestamp(text)
                if stamp is not None:
                    return TIMESTAMP, text if v2 else stamp
            plain = text.replace("_", "")
            number = _go_int(plain)
            if number is not None:
                return INT, number
            if _YAML_FLOAT.fullmatch(plain):
                value = float(plain)
                if not math.isinf(value):
                    return FLOAT, value
    return STR, text


def json_number(value: float) -> int | float:
    """A float as it comes back from kustomize's JSON: whole numbers that fit 64 bits are integers."""
    if value.is_integer() and -(2**63) <= value < 2**64:
        return int(value)
    return value


def go_scalar(text: str, tag: str = "", *, v2: bool = False) -> Any:
    """The value go-yaml (v3, or v2) decodes from a scalar; ``tag`` is an explicit core tag or empty.

    Raises ValueError when the text is not of the explicit tag's type.
    """
    got, value = _resolve(text, tag, _V2_WORDS if v2 else _V3_WORDS, v2)
    if tag and got != tag and not (tag == FLOAT and got == INT):
        short = tag.removeprefix(_TAG)
        raise ValueError(f"cannot decode !!{got.removeprefix(_TAG)} `{text}` as a !!{short}")
    return json_number(float(value)) if FLOAT in (got, tag) else value


def _key_text(key: Any) -> str:
    """A mapping key as JSON needs it: a string (``1`` -> "1", ``true`` -> "true", ``~`` -> "null")."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


# -- resolver and constructors ---------------------------------------------------------------------


class _GoResolver(BaseResolver):
    """Tags plain scalars as go-yaml's resolve table does; the plain-scalar constructor does the rest."""

    words: dict[str, tuple[str, Any]] = _V3_WORDS

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        """No path resolvers here: nothing to track while composing."""

    def ascend_resolver(self) -> None:
        """No path resolvers here: nothing to track while composing."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                if not value:
                    return NULL
                first = value[0]
                if first in _NUMBER_START:
                    return _PLAIN
                if first in _WORD_START:
                    return _PLAIN if value in self.words else STR
                if value == "<<":
                    return MERGE
            return STR
        return SEQ if kind is SequenceNode else MAP


def _problem(node: Node, message: str) -> ConstructorError:
    return ConstructorError(None, None, message, node.start_mark)


def _construct_plain(loader: Any, node: ScalarNode) -> Any:
    return go_scalar(node.value, v2=loader.v2)


def _construct_tagged(loader: Any, node: Node) -> Any:
    """A scalar with an explicit core tag (``!!int "12"``), decoded as go-yaml decodes it."""
    if not isinstance(node, ScalarNode):
        return _construct_other(loader, node)
    try:
        return go_scalar(node.value, node.tag, v2=loader.v2)
    except ValueError as exc:
        raise _problem(node, str(exc)) from None


def _construct_null(loader: Any, node: Node) -> Any:
    if isinstance(node, ScalarNode) and node.value in ("", "~", "null", "Null", "NULL"):
        return None
    raise _problem(node, f"cannot decode `{getattr(node, 'value', '')}` as a !!null")


def _construct_binary(loader: Any, node: Node) -> str:
    """``!!binary``: go-yaml decodes the base64 into the string it holds."""
    text = loader.construct_scalar(node)
    try:
        data = base64.b64decode(text.replace("\n", "").replace("\r", ""), validate=True)
    except (binascii.Error, ValueError):
        raise _problem(node, "!!binary value contains invalid base64 data") from None
    return data.decode("utf-8", "replace")


def _construct_map(loader: Any, node: MappingNode) -> Iterator[dict[str, Any]]:
    if not isinstance(node, MappingNode):
        raise _problem(node, f"cannot decode a {node.id} as a !!map")
    data: dict[str, Any]
    key_lines: dict[Any, int] | None = None
    if loader.lines:
        data = LineDict()
        data.line = node.start_mark.line + 1 + loader.line_offset
        data.key_lines = key_lines = {}
    else:
        data = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        if isinstance(key_node, MappingNode | SequenceNode):  # `{{ x }}` unrendered: kustomize refuses it
            raise _problem(key_node, "invalid map key: a mapping or list cannot be a key")
        key = _key_text(loader.construct_object(key_node, deep=True))
        if node.flow_style and value_node.tag == NULL and not value_node.value:
            data[key] = ""  # go-yaml reads a missing value in a flow mapping ({a, b: }) as ""
        else:
            data[key] = loader.construct_object(value_node, deep=True)
        if key_lines is not None:
            key_lines[key] = key_node.start_mark.line + 1 + loader.line_offset


def _construct_seq(loader: Any, node: SequenceNode) -> Iterator[list[Any]]:
    if not isinstance(node, SequenceNode):
        raise _problem(node, f"cannot decode a {node.id} as a !!seq")
    data: list[Any]
    if loader.lines:
        data = LineList()
        data.line = node.start_mark.line + 1 + loader.line_offset
        data.item_lines = [n.start_mark.line + 1 + loader.line_offset for n in node.value]
    else:
        data = []
    yield data
    data.extend(loader.construct_object(n, deep=True) for n in node.value)


def _construct_other(loader: Any, node: Node) -> Any:
    """Any other tag (``!secret``, ``!Ref``, ``!!python/...``, ``!!set``): the node as it is written."""
    if isinstance(node, MappingNode):
        return _construct_map(loader, node)
    if isinstance(node, SequenceNode):
        return _construct_seq(loader, node)
    return loader.construct_scalar(node)


class _GoConstructor(SafeConstructor):
    """Builds go-yaml's values; ``unique_keys`` makes a key given twice an error, as for resources."""

    lines = True
    v2 = False
    unique_keys = True
    line_offset = 0  # lines before the text being read (kustomize reads a file in pieces)

    def flatten_mapping(self, node: MappingNode) -> None:
        # Called for every mapping before its merge keys are folded in (also for merged ones).
        if self.unique_keys:
            _check_unique(node, self.line_offset)
        super().flatten_mapping(node)


def _check_unique(node: MappingNode, line_offset: int) -> None:
    """go-yaml v3's check: two keys with the same text (quoted or not) in one mapping."""
    try:
        if len({key_node.value for key_node, _ in node.value}) == len(node.value):
            return
    except TypeError:  # a key that is a mapping or a sequence: look at the scalar ones
        pass
    seen: dict[str, Node] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, ScalarNode):
            first = seen.setdefault(key_node.value, key_node)
            if first is not key_node:
                line = first.start_mark.line + 1 + line_offset
                raise _problem(key_node, f"mapping key {key_node.value!r} already defined at line {line}")


for _tag, _constructor in (
    (_PLAIN, _construct_plain),
    (STR, SafeConstructor.construct_yaml_str),
    (NULL, _construct_null),
    (MERGE, SafeConstructor.construct_yaml_str),
    (BINARY, _construct_binary),
    (MAP, _construct_map),
    (SEQ, _construct_seq),
    (None, _construct_other),
    *((t, _construct_tagged) for t in (BOOL, INT, FLOAT, TIMESTAMP)),
    # SafeConstructor's own types that go-yaml does not have: taken as written.
    *((f"{_TAG}{t}", _construct_other) for t in ("set", "omap", "pairs", "value")),
):
    _GoConstructor.add_constructor(_tag, _constructor)


class _ReanchorComposer(Composer):
    """A composer that lets a later anchor of the same name replace the earlier one (go-yaml does)."""

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None and not isinstance(event, yaml.AliasEvent):
            self.anchors.pop(anchor, None)
        return super().compose_node(parent, index)


def _loader(name: str, *, fast: bool, lines: bool, v2: bool, unique_keys: bool) -> type:
    if fast and _CParser is not None:
        bases: tuple[type, ...] = (_CParser, _GoConstructor, _GoResolver)
    else:
        bases = (Reader, Scanner, Parser, _ReanchorComposer, _GoConstructor, _GoResolver)

    def __init__(self: Any, stream: str) -> None:
        if fast and _CParser is not None:
            _CParser.__init__(self, stream)
        else:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)
        SafeConstructor.__init__(self)
        BaseResolver.__init__(self)

    attrs = {
        "__init__": __init__,
        "lines": lines,
        "v2": v2,
        "unique_keys": unique_keys,
        "words": _V2_WORDS if v2 else _V3_WORDS,
        "__doc__": f"go-yaml {'v2' if v2 else 'v3'} values{', with line numbers' if lines else ''}.",
    }
    return type(name, bases, attrs)


_SOURCE_LOADERS = {
    (unique, fast): _loader("SourceLoader", fast=fast, lines=True, v2=False, unique_keys=unique)
    for unique in (True, False)
    for fast in (True, False)
}
BuildOutputLoader = _loader("BuildOutputLoader", fast=True, lines=False, v2=False, unique_keys=False)
"""Reads ``kubectl kustomize`` output: the values kustomize holds (go-yaml v3, JSON numbers)."""
SubstitutedLoader = _loader("SubstitutedLoader", fast=True, lines=False, v2=True, unique_keys=False)
"""Reads a resource's text after Flux's ``postBuild`` substitution, as Flux does (go-yaml v2)."""


# -- documents ------------------------------------------------------------------------------------

# kyaml splits a file on its own before parsing: at a line starting with --- after a newline.
_KIO_SEPARATOR = re.compile(r"\n---.*\n")


def kio_pieces(text: str) -> list[tuple[int, str]]:
    """A resource file split as kustomize splits it, each piece with the number of lines before it.

    kyaml cuts at every line starting with ``---`` and reads the first document of each piece;
    after ``---`` only spaces and a comment may follow. Raises YamlSyntaxError.
    """
    if "\n---" not in text:
        return [(0, text)]
    text = text.replace("\r\n", "\n")
    pieces: list[tuple[int, str]] = []
    start = line = 0
    for m in _KIO_SEPARATOR.finditer(text):
        separator = m.group()
        line_at_separator = line + text.count("\n", start, m.start()) + 1
        rest = separator[4:].strip()
        if rest and not rest.startswith("#"):
            raise YamlSyntaxError(
                f"invalid document separator {separator.strip()!r}: kustomize allows only a comment "
                "after --- (put the content on the next line)",
                line_at_separator + 1,
            )
        pieces.append((line, text[start : m.start()] + "\n"))
        start, line = m.end(), line_at_separator + 1
    pieces.append((line, text[start:]))
    return pieces


def _syntax_error(exc: yaml.YAMLError, line_offset: int) -> YamlSyntaxError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{exc.context}, {problem}"
        return YamlSyntaxError(problem, mark.line + 1 + line_offset if mark is not None else None)
    return YamlSyntaxError(str(exc), None)


def _read(text: str, line_offset: int, loader_class: type, first_only: bool) -> list[Any]:
    loader = loader_class(text)
    loader.line_offset = line_offset
    try:
        docs = []
        while loader.check_data():
            docs.append(loader.get_data())
            if first_only:
                break
        return docs
    finally:
        loader.dispose()


def _parse(text: str, line_offset: int, *, resource: bool) -> list[Any]:
    """The documents of ``text`` (the first only for a resource piece), libyaml first."""
    try:
        return _read(text, line_offset, _SOURCE_LOADERS[(resource, True)], resource)
    except yaml.composer.ComposerError as exc:
        if "found duplicate anchor" not in str(exc):
            raise _syntax_error(exc, line_offset) from None
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, line_offset) from None
    try:
        return _read(text, line_offset, _SOURCE_LOADERS[(resource, False)], resource)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, line_offset) from None


def load_all(text: str, *, resource: bool = True) -> list[Any]:
    """Every document of a YAML stream as kustomize reads it, with line numbers.

    ``resource``: the text is read as kustomize reads a resource or patch file (split at ``---``
    lines, which allow only a comment after them, the first document of each piece; a key given
    twice is an error); otherwise as kustomize reads its kustomization file and as applications
    read theirs (every document, the last of two equal keys wins). Raises YamlSyntaxError.
    """
    if not resource:
        return _parse(text, 0, resource=False)
    return [doc for line, piece in kio_pieces(text) for doc in _parse(piece, line, resource=True)]
