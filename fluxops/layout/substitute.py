"""Flux's post-build variable substitution: the ``${var}`` syntax of fluxcd/pkg/envsubst.

kustomize-controller (Flux 2.7: kustomize-controller v1.7, fluxcd/pkg/kustomize v1.24 with
fluxcd/pkg/envsubst v1.5) runs ``envsubst.Eval`` over the YAML text of every built object. This
module parses and evaluates that syntax the same way, quirks included (each is named where it is
implemented; the source is fluxcd/pkg envsubst/parse/scan.go, parse.go, funcs.go, path/match.go):

- ``${var}``; ``$$`` is an escape that prints one ``$`` (so ``$${var}`` prints ``${var}``); a ``$``
  not followed by ``{`` or ``$`` is text, so ``$var`` is never substituted.
- ``${var:=default}`` / ``${var=default}`` / ``${var:-default}`` (also ``:?`` and ``:+``, which act as
  defaults): the default when the value is empty; ``${var-default}`` is a parse error.
- ``${var:offset}``, ``${var:offset:length}``; ``${#var}``; ``${var^}``, ``${var^^}``, ``${var,}``,
  ``${var,,}``; ``${var#glob}``, ``${var##glob}``, ``${var%glob}``, ``${var%%glob}``;
  ``${var/sub/repl}``, ``${var//sub/repl}``, ``${var/#sub/repl}``, ``${var/%sub/repl}`` (plain
  substrings; ``\\/`` and ``\\\\`` escape inside them). Arguments may hold nested ``${...}``.
- A variable not defined is the empty string unless ``strict`` (the controller's
  StrictPostBuildSubstitutions feature gate, off by default): then a bare ``${var}`` is an error.

A value may be :data:`UNKNOWN` (a SOPS-encrypted Secret's key: its name is known, its value is
not offline): an expression that uses it is left as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# kustomize-controller's check of variable names (fluxcd/pkg kustomize/kustomize_varsub.go; Go's
# [:alpha:] and [:digit:] are ASCII).
VAR_NAME = re.compile(r"^[_A-Za-z][_A-Za-z0-9]*$")


class _Unknown(str):
    """The type of :data:`UNKNOWN`."""

    __slots__ = ()


UNKNOWN = _Unknown("")  # a variable whose value cannot be known offline


class SubstitutionError(ValueError):
    """A text envsubst refuses (Flux fails the Kustomization with this message)."""


# The error texts of fluxcd/pkg/envsubst/parse.
BAD_SUBSTITUTION = "bad substitution"
MISSING_CLOSING_BRACE = "missing closing brace"
BAD_VARIABLE_NAME = "unable to parse variable name"
BAD_FUNCTION_ARGUMENT = "unable to parse substitution within function"


@dataclass
class _Text:
    value: str


@dataclass
class _Expr:
    name: str
    op: str
    raw: str = ""
    args: list[_Text | _Expr] = field(default_factory=list)


def _is_ident(ch: str) -> bool:
    """Go's unicode.IsLetter / IsDigit / '_' (names may even start with a digit here)."""
    return ch == "_" or ch.isalpha() or ch.isdecimal()


class _Parser:
    """A recursive-descent reading of envsubst's grammar over one string."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.s[j] if j < len(self.s) else ""

    def opens(self) -> bool:
        """True at ``${``."""
        return self.peek() == "$" and self.peek(1) == "{"

    def template(self) -> list[_Text | _Expr]:
        """Top level: text, ``$$`` escapes and expressions."""
        nodes: list[_Text | _Expr] = []
        text: list[str] = []
        while self.i < len(self.s):
            if self.opens():
                if text:
                    nodes.append(_Text("".join(text)))
                    text = []
                nodes.append(self.expr())
            elif self.peek() == "$" and self.peek(1) == "$":
                text.append("$")  # the second '$' is kept and never starts an expression
                self.i += 2
            else:
                text.append(self.s[self.i])
                self.i += 1
        if text:
            nodes.append(_Text("".join(text)))
        return nodes

    def expr(self) -> _Expr:
        """After ``${``: a name and an optional operator, up to the closing brace."""
        start = self.i
        self.i += 2
        node = self._length() if self.peek() == "#" else self._named()
        node.raw = self.s[start : self.i]
        return node

    def _name(self) -> str:
        begin = self.i
        while self.i < len(self.s) and _is_ident(self.s[self.i]):
            self.i += 1
        return self.s[begin : self.i]

    def _close(self, error: str = BAD_SUBSTITUTION) -> None:
        if self.peek() != "}":
            raise SubstitutionError(error)
        self.i += 1

    def _length(self) -> _Expr:
        self.i += 1
        name = self._name()
        if not name:
            raise SubstitutionError(BAD_SUBSTITUTION)
        self._close()
        return _Expr(name, "#")

    def _named(self) -> _Expr:
        name = self._name()
        if not name:
            raise SubstitutionError(BAD_VARIABLE_NAME)
        ch = self.peek()
        if ch == ":":
            return self._default(name) if self.peek(1) in ("=", "-", "?", "+") else self._substring(name)
        if ch == "=":
            return self._default(name)
        if ch in (",", "^"):
            return self._casing(name)
        if ch == "/":
            return self._replace(name)
        if ch in ("#", "%"):
            return self._remove(name, ch)
        self._close(MISSING_CLOSING_BRACE)  # includes ${var-default}: '-' is no operator here
        return _Expr(name, "")

    def _op(self, allowed: Callable[[str, int], bool]) -> str:
        begin = self.i
        while self.i < len(self.s) and allowed(self.s[self.i], self.i - begin + 1):
            self.i += 1
        return self.s[begin : self.i]

    def _arg(self, accept: Callable[[str], bool], escapes: bool) -> _Text | _Expr:
        """One function argument: a nested expression, or text while ``accept`` holds.

        With ``escapes`` (replacement arguments only), ``$$``, ``\\/`` and ``\\\\`` keep their second
        character as text whatever it is.
        """
        if self.opens():
            return self.expr()
        text: list[str] = []
        first = True
        while self.i < len(self.s):
            if not first and self.opens():
                break
            ch, nxt = self.s[self.i], self.peek(1)
            if escapes and ((ch == "$" and nxt == "$") or (ch == "\\" and nxt in ("/", "\\"))):
                text.append(nxt)
                self.i += 2
            elif accept(ch):
                text.append(ch)
                self.i += 1
            elif first:
                raise SubstitutionError(BAD_FUNCTION_ARGUMENT)
            else:
                break
            first = False
        if first:
            raise SubstitutionError(BAD_FUNCTION_ARGUMENT)  # end of text
        return _Text("".join(text))

    def _default(self, name: str) -> _Expr:
        if self.peek() == "=":
            op = self._op(lambda c, n: n == 1 and c == "=")
        else:
            op = self._op(lambda c, n: (n == 1 and c == ":") or (n == 2 and c in "=-?+"))
        node = _Expr(name, op)
        while self.peek() != "}":
            node.args.append(self._arg(lambda c: c != "}", escapes=False))
        self.i += 1
        return node

    def _substring(self, name: str) -> _Expr:
        self.i += 1
        node = _Expr(name, ":")
        node.args.append(self._arg(lambda c: c not in ":}", escapes=False))
        if self.peek() == "}":
            self.i += 1
            return node
        if self.peek() != ":":
            raise SubstitutionError(BAD_SUBSTITUTION)
        while self.peek() == ":":  # envsubst takes a run of colons as the delimiter
            self.i += 1
        node.args.append(self._arg(lambda c: c != "}", escapes=False))
        self._close()
        return node

    def _remove(self, name: str, mark: str) -> _Expr:
        op = self._op(lambda c, n: c == mark and n < 3)
        node = _Expr(name, op, args=[self._arg(lambda c: c != "}", escapes=False)])
        self._close()
        return node

    def _replace(self, name: str) -> _Expr:
        op = self._op(lambda c, n: (n == 1 and c == "/") or (n == 2 and c in "/#%"))
        # The pattern runs to the next unescaped '/', even across a '}' (as envsubst reads it).
        node = _Expr(name, op, args=[self._arg(lambda c: c != "/", escapes=True)])
        if self.peek() != "/":
            raise SubstitutionError(BAD_SUBSTITUTION)
        while self.peek() == "/":
            self.i += 1
        if self.peek() == "}":
            self.i += 1
            return node
        node.args.append(self._arg(lambda c: c != "}", escapes=True))
        self._close()
        return node

    def _casing(self, name: str) -> _Expr:
        op = self._op(lambda c, n: c in ",^" and n < 3)
        self._close()
        return _Expr(name, op)


# --- evaluation ------------------------------------------------------------------------------


def glob_match(pattern: str, name: str) -> bool | None:
    """envsubst's glob (path/match.go): ``*`` any run, ``?`` any one character, ``[...]`` classes.

    Unlike Go's path.Match, ``*`` and ``?`` match ``/`` too. None for a malformed pattern.
    """
    tokens = _glob_tokens(pattern)
    if tokens is None:
        return None
    return _glob_from(tokens, 0, name, 0, {})


_Token = tuple[str, object]


def _glob_tokens(pattern: str) -> list[_Token] | None:
    """``pattern`` as ('*', None), ('?', None), ('=', char) and ('[', (negated, ranges)) tokens."""
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch in "*?":
            tokens.append((ch, None))
        elif ch == "\\":
            if i + 1 >= len(pattern):
                return None
            i += 1
            tokens.append(("=", pattern[i]))
        elif ch == "[":
            parsed = _char_class(pattern, i + 1)
            if parsed is None:
                return None
            negated, ranges, i = parsed
            tokens.append(("[", (negated, ranges)))
            continue
        else:
            tokens.append(("=", ch))
        i += 1
    return tokens


def _char_class(pattern: str, i: int) -> tuple[bool, list[tuple[str, str]], int] | None:
    """A class starting after ``[``: negated, its (lo, hi) ranges and the index after ``]``."""
    negated = i < len(pattern) and pattern[i] == "^"
    i += negated
    ranges: list[tuple[str, str]] = []
    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges:
            return negated, ranges, i + 1
        lo, i = _class_char(pattern, i)
        if lo is None:
            return None
        hi = lo
        if i < len(pattern) and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
            if hi is None:
                return None
        ranges.append((lo, hi))  # lo > hi matches nothing, as in Go
        if i >= len(pattern):
            return None


def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            return None, i
    return pattern[i], i + 1


def _glob_from(tokens: list[_Token], t: int, name: str, n: int, memo: dict[tuple[int, int], bool]) -> bool:
    """True when ``tokens[t:]`` matches ``name[n:]`` whole."""
    key = (t, n)
    if key in memo:
        return memo[key]
    if t == len(tokens):
        result = n == len(name)
    elif tokens[t][0] == "*":
        result = any(_glob_from(tokens, t + 1, name, m, memo) for m in range(n, len(name) + 1))
    elif n == len(name):
        result = False
    else:
        kind, arg = tokens[t]
        ch = name[n]
        if kind == "=":
            ok = ch == arg
        elif kind == "[":
            negated, ranges = arg  # type: ignore[misc]
            ok = any(lo <= ch <= hi for lo, hi in ranges) != negated
        else:
            ok = True
        result = ok and _glob_from(tokens, t + 1, name, n + 1, memo)
    memo[key] = result
    return result


def _trim_prefix(value: str, pattern: str, longest: bool) -> str:
    """Strip the shortest or longest non-empty prefix matching ``pattern`` (funcs.go trim*)."""
    lengths = range(len(value), 0, -1) if longest else range(1, len(value) + 1)
    for n in lengths:
        matched = glob_match(pattern, value[:n])
        if matched is None:
            return value
        if matched:
            return value[n:]
    return value


def _trim_suffix(value: str, pattern: str, longest: bool) -> str:
    # envsubst reverses the value and the pattern and trims a prefix (a pattern like [a-z] reversed
    # no longer parses, so it strips nothing; kept as Flux does it).
    return _trim_prefix(value[::-1], pattern[::-1], longest)[::-1]


def _substring(value: str, args: list[str]) -> str:
    """``${var:offset[:length]}`` (funcs.go toSubstr; offsets in characters, Flux counts bytes)."""
    try:
        pos = _atoi(args[0])
    except ValueError:
        return value
    if pos < 0:
        pos = max(0, len(value) + pos)
    if len(args) == 1:
        return value[pos:]
    try:
        length = _atoi(args[1])
    except ValueError:
        return value
    if pos + length >= len(value):
        return value[pos:]
    if length < 0:
        raise SubstitutionError(f"substring length {length} out of range")  # envsubst panics here
    return value[pos : pos + length]


def _atoi(text: str) -> int:
    """Go's strconv.Atoi: optional sign, ASCII digits only."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(text)
    return int(text)


def _apply(op: str, value: str, args: list[str]) -> str:
    """The function an operator names (funcs.go lookupFunc)."""
    if op == "#" and not args:
        return str(len(value.encode("utf-8")))
    simple: dict[str, Callable[[str], str]] = {
        ",": lambda v: v[:1].lower() + v[1:],
        ",,": str.lower,
        "^": lambda v: v[:1].upper() + v[1:],
        "^^": str.upper,
    }
    if op in simple:
        return simple[op](value)
    if op in ("#", "##"):
        return _trim_prefix(value, args[0], longest=op == "##")
    if op in ("%", "%%"):
        return _trim_suffix(value, args[0], longest=op == "%%")
    if op == ":":
        return _substring(value, args)
    if op in ("/", "//"):
        return value.replace(args[0], args[1] if len(args) > 1 else "", 1 if op == "/" else -1)
    if op in ("/#", "/%"):
        if len(args) != 2:
            return value  # ${var/#sub/} leaves the value as it is
        if op == "/#" and value.startswith(args[0]):
            return args[1] + value[len(args[0]) :]
        if op == "/%" and value.endswith(args[0]):
            return value[: len(value) - len(args[0])] + args[1]
        return value
    # '', '=', ':=', ':-', ':?', ':+' and mixed casings like ',^': the default function
    return "".join(args) if value == "" and args else value


class _Evaluator:
    def __init__(self, variables: Mapping[str, str], strict: bool) -> None:
        self.variables = variables
        self.strict = strict

    def node(self, node: _Text | _Expr) -> str | None:
        """The text of a node; None when it depends on an unknown value."""
        if isinstance(node, _Text):
            return node.value
        args = [self.node(a) for a in node.args]
        value = self.variables.get(node.name)
        if value is None:
            if self.strict and node.op == "":
                raise SubstitutionError(f'variable not set (strict mode): "{node.name}"')
            value = ""
        if isinstance(value, _Unknown) or any(a is None for a in args):
            return None
        return _apply(node.op, value, [a for a in args if a is not None])

    def render(self, nodes: list[_Text | _Expr]) -> str:
        out: list[str] = []
        for node in nodes:
            text = self.node(node)
            out.append(node.raw if text is None and isinstance(node, _Expr) else text or "")
        return "".join(out)


def substitute(text: str, variables: Mapping[str, str], *, strict: bool = False) -> str:
    """``text`` with every expression replaced as Flux's envsubst replaces it.

    Raises SubstitutionError with envsubst's message for text it cannot parse.
    """
    if "$" not in text:
        return text
    return _Evaluator(variables, strict).render(_Parser(text).template())


def invalid_names(variables: Mapping[str, str]) -> list[str]:
    """Variable names kustomize-controller refuses (it fails the Kustomization for any of them)."""
    return sorted(name for name in variables if not VAR_NAME.match(name))
