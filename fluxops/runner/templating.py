"""Jinja2 for playbooks: values rendered with StrictUndefined, conditions evaluated, names found.

A string that is one expression (``"{{ ports }}"``) renders to the expression's value, keeping its
type (a list stays a list), as in Ansible; any other template renders to a string. Secrets
(:class:`~fluxops.masking.Secret`) are revealed while a template renders and the result is wrapped in
a Secret again whenever it holds a secret value, so a secret never turns into ``***`` by accident and
never loses its mask.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
import yaml

from fluxops.masking import Secret

TemplateError = jinja2.TemplateError
UndefinedError = jinja2.UndefinedError
_MARKERS = ("{{", "{%", "{#")
MIN_SECRET_IN_TEXT = 4  # shorter secret values mark a rendered string secret only when equal to it


def is_template(value: Any) -> bool:
    """True when ``value`` (or a string inside it) holds a Jinja2 template."""
    if isinstance(value, str):
        return any(m in value for m in _MARKERS)
    if isinstance(value, Mapping):
        return any(is_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_template(v) for v in value)
    return False


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"yes", "on", "true", "1", "y", "t"}
    return bool(value)


def _regex_replace(value: Any, pattern: str, replacement: str = "") -> str:
    return re.sub(pattern, replacement, str(value))


def _make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(
        bool=_to_bool,
        to_json=lambda v: json.dumps(v, sort_keys=True),
        to_nice_json=lambda v: json.dumps(v, indent=2, sort_keys=True),
        to_yaml=lambda v: yaml.safe_dump(v, default_flow_style=False, sort_keys=False),
        b64encode=lambda v: base64.b64encode(str(v).encode()).decode(),
        b64decode=lambda v: base64.b64decode(str(v)).decode(),
        basename=lambda v: os.path.basename(str(v)),
        dirname=lambda v: os.path.dirname(str(v)),
        regex_replace=_regex_replace,
    )
    return env


ENV = _make_environment()
GLOBAL_NAMES = frozenset(ENV.globals)


@lru_cache(maxsize=2048)
def _template(text: str) -> jinja2.Template:
    return ENV.from_string(text)


@lru_cache(maxsize=2048)
def _expression(source: str) -> Any:
    return ENV.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=2048)
def _single_expression(text: str) -> str | None:
    """The source of the one expression ``text`` consists of, or None."""
    stripped = text.strip()
    if not (stripped == text and text.startswith("{{") and text.endswith("}}")):
        return None
    body = ENV.parse(text).body
    if len(body) != 1 or not isinstance(body[0], jinja2.nodes.Output) or len(body[0].nodes) != 1:
        return None
    if isinstance(body[0].nodes[0], jinja2.nodes.TemplateData):
        return None
    return text[2:-2].strip("-+ \t\n")


def _secrets_in(value: Any) -> Iterator[Secret]:
    if isinstance(value, Secret):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _secrets_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets_in(item)


def secrets_in(value: Any) -> list[Secret]:
    """Every Secret inside ``value`` (mappings and lists walked)."""
    return list(dict.fromkeys(_secrets_in(value)))


def revealed(value: Any) -> Any:
    """``value`` with every Secret inside replaced by its plain text (for rendering only)."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Mapping):
        return {k: revealed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [revealed(v) for v in value]
    return value


def _pieces(secrets: Iterable[str]) -> list[str]:
    """What betrays a secret inside other text: the value and each of its lines, stripped (so
    ``{{ token.stdout | trim }}`` is still known for a secret), as ``mask`` looks for them."""
    found: list[str] = []
    for secret in secrets:
        found += [secret, *(line.strip() for line in secret.splitlines())]
    return list(dict.fromkeys(p for p in found if p))


def _rewrap(value: Any, secrets: Iterable[str]) -> Any:
    """Strings of a rendered value that hold a secret value become Secrets again."""
    if isinstance(value, str):
        for piece in _pieces(secrets):
            if value.strip() == piece or (len(piece) >= MIN_SECRET_IN_TEXT and piece in value):
                return Secret(value)
        return value
    if isinstance(value, Mapping):
        return {k: _rewrap(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rewrap(v, secrets) for v in value]
    return value


def _check_defined(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError, naming the variable
    return value


class Templar:
    """Renders templates against one host's variables (secrets revealed only while rendering)."""

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.variables = variables
        self._context = revealed(variables)
        self._secrets = [s.reveal() for s in secrets_in(variables) if s.reveal()]

    def with_vars(self, extra: Mapping[str, Any]) -> Templar:
        """A Templar that also knows ``extra`` (e.g. a registered result or the loop's ``item``)."""
        child = Templar.__new__(Templar)
        child.variables = {**self.variables, **extra}
        child._context = {**self._context, **revealed(extra)}
        child._secrets = list(dict.fromkeys([*self._secrets, *(s.reveal() for s in secrets_in(extra))]))
        return child

    @property
    def secrets(self) -> list[str]:
        """The plain values of every secret the variables hold (for masking output)."""
        return list(self._secrets)

    def render(self, value: Any) -> Any:
        """``value`` with every template in it rendered (mappings and lists walked)."""
        if isinstance(value, str):
            return self._render_text(value)
        if isinstance(value, Mapping):
            return {k: self.render(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.render(v) for v in value]
        return value

    def render_text(self, text: str) -> str:
        """A template file's text rendered to text (for the template module), secrets in clear."""
        return _template(text).render(self._context)

    def _render_text(self, text: str) -> Any:
        if not is_template(text):
            return text
        source = _single_expression(text)
        if source is not None:
            result = _check_defined(_expression(source)(**self._context))
        else:
            result = _template(text).render(self._context)
        return _rewrap(result, self._secrets)

    def truth(self, condition: Any) -> bool:
        """A ``when`` condition: a boolean, a bare expression, or a list of them (all must hold)."""
        if isinstance(condition, list | tuple):
            return all(self.truth(c) for c in condition)
        if isinstance(condition, bool):
            return condition
        if condition is None:
            return True
        text = str(condition).strip()
        if is_template(text):  # Ansible renders such a condition first, then evaluates what it gives
            rendered = self._render_text(text)
            if isinstance(rendered, Secret):
                rendered = rendered.reveal()
            if not isinstance(rendered, str):
                return bool(rendered)
            text = rendered
        return bool(_check_defined(_expression(text)(**self._context)))


# --- names a template needs -------------------------------------------------------------------

_GUARD_TESTS = {"defined", "undefined"}
_GUARD_FILTERS = {"default", "d"}


def _guarded(tree: jinja2.nodes.Template) -> set[str]:
    """Names tested with ``is defined``/``is undefined`` or given a ``default``: they may be missing."""
    names: set[str] = set()
    for node in tree.find_all((jinja2.nodes.Test, jinja2.nodes.Filter)):
        wanted = _GUARD_TESTS if isinstance(node, jinja2.nodes.Test) else _GUARD_FILTERS
        if node.name in wanted and isinstance(node.node, jinja2.nodes.Name):
            names.add(node.node.name)
    return names


@lru_cache(maxsize=2048)
def _names_of_text(text: str) -> frozenset[str]:
    tree = ENV.parse(text)
    undeclared = jinja2.meta.find_undeclared_variables(tree)
    return frozenset(undeclared - _guarded(tree) - GLOBAL_NAMES)


def names_in(value: Any) -> set[str]:
    """The variables the templates in ``value`` need (names guarded by ``is defined``/``default`` aside).

    Raises TemplateSyntaxError for a template that does not parse.
    """
    if isinstance(value, str):
        return set(_names_of_text(value)) if is_template(value) else set()
    if isinstance(value, Mapping):
        return set().union(*(names_in(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(names_in(v) for v in value)) if value else set()
    return set()


def names_in_condition(condition: Any) -> set[str]:
    """The variables a ``when`` condition (bare expressions) needs."""
    if isinstance(condition, list | tuple):
        return set().union(*(names_in_condition(c) for c in condition)) if condition else set()
    if condition is None or isinstance(condition, bool):
        return set()
    text = str(condition).strip()
    return names_in(text if is_template(text) else "{{ " + text + " }}")
