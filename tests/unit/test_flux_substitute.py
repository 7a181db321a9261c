"""Flux's variable syntax, form by form, as its docs and fluxcd/pkg/envsubst describe it.

Sources: the Kustomization API page ("Post build variable substitution") and the envsubst README
(https://github.com/fluxcd/pkg/blob/main/envsubst/README.md), envsubst v1.5 as Flux 2.7 uses it.
"""

from __future__ import annotations

import pytest

from fluxops.layout.substitute import UNKNOWN, SubstitutionError, glob_match, invalid_names, substitute

VARS = {
    "cluster_env": "prod",
    "region": "eu-central-1",
    "empty": "",
    "path": "apps/web/site.tar.gz",
    "name": "podinfo",
    "mixed": "Hello World",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ${var} and what is not a variable
        ("region: ${region}", "region: eu-central-1"),
        ("a${name}b${name}", "apodinfobpodinfo"),
        ("home: $HOME", "home: $HOME"),  # $var is never substituted (Flux docs)
        ("keep: $${region}", "keep: ${region}"),  # $${var} prints ${var} (Flux docs)
        ("pid: $$", "pid: $"),
        ("cost: $5 ${name}", "cost: $5 podinfo"),
        ("undefined: [${nothing}]", "undefined: []"),  # undefined variables are empty (Flux docs)
        # defaults: used when the variable is unset or empty
        ("env: ${cluster_env:=dev}", "env: prod"),
        ("env: ${unset:=dev}", "env: dev"),
        ("env: ${empty:=dev}", "env: dev"),
        ("env: ${unset=dev}", "env: dev"),
        ("env: ${unset:-dev}", "env: dev"),
        ("env: ${unset:=dev-${name}}", "env: dev-podinfo"),  # a nested variable in the default
        ("env: ${unset:=}", "env: "),
        # ${var:position} and ${var:position:length}
        ("${region:3}", "central-1"),
        ("${region:0:2}", "eu"),
        ("${region:3:7}", "central"),
        ("${region:-1}", "eu-central-1"),  # ':-' is the default operator, not an offset
        ("${region:99}", ""),
        ("${region:x}", "eu-central-1"),  # an offset that is no number leaves the value
        # ${var/substring/replacement} and friends: plain substrings
        ("${region/central/west}", "eu-west-1"),
        ("${path/\\//-}", "apps-web/site.tar.gz"),  # \/ is a literal slash
        ("${path//\\//-}", "apps-web-site.tar.gz"),
        ("${name/#pod/web}", "webinfo"),
        ("${name/%info/cast}", "podcast"),
        ("${name/#info/x}", "podinfo"),  # not a prefix: unchanged
        ("${name/o/}", "pdinfo"),
        # trimming with globs
        ("${path#*/}", "web/site.tar.gz"),
        ("${path##*/}", "site.tar.gz"),
        ("${path%.*}", "apps/web/site.tar"),
        ("${path%%.*}", "apps/web/site"),
        ("${name#p?d}", "info"),
        ("${name#[a-p]}", "odinfo"),
        # case and length
        ("${name^}", "Podinfo"),
        ("${name^^}", "PODINFO"),
        ("${mixed,}", "hello World"),
        ("${mixed,,}", "hello world"),
        ("${#name}", "7"),
    ],
)
def test_forms(text: str, expected: str) -> None:
    assert substitute(text, VARS) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("${region-dev}", "missing closing brace"),  # listed in the README, but not parsed by envsubst
        ("${region", "missing closing brace"),
        ("${}", "unable to parse variable name"),
        ("${-x}", "unable to parse variable name"),
        ("${region:}", "unable to parse substitution within function"),
        ("${region#}", "unable to parse substitution within function"),
        ("${region/eu}", "bad substitution"),  # a replacement needs its second slash
        ("${#}", "bad substitution"),
        ("${region^x}", "bad substitution"),
        ("${unset:=open", "unable to parse substitution within function"),
    ],
)
def test_syntax_errors_stop_the_build(text: str, error: str) -> None:
    with pytest.raises(SubstitutionError, match=f"^{error}$"):
        substitute(f"before\n{text}\nafter", VARS)


def test_strict_mode_refuses_undefined_variables_without_default() -> None:
    # --feature-gates=StrictPostBuildSubstitutions=true (off by default).
    with pytest.raises(SubstitutionError, match='variable not set \\(strict mode\\): "nothing"'):
        substitute("${nothing}", VARS, strict=True)
    assert substitute("${nothing:=x} ${region}", VARS, strict=True) == "x eu-central-1"
    assert substitute("${nothing}", VARS) == ""


def test_a_value_that_cannot_be_known_keeps_its_expression() -> None:
    variables = {**VARS, "token": UNKNOWN}
    assert substitute("t: ${token} ${token:=x} ${unset:=${token}} ${name}", variables) == (
        "t: ${token} ${token:=x} ${unset:=${token}} podinfo"
    )


def test_values_are_not_substituted_again() -> None:
    assert substitute("${a}", {"a": "${b}", "b": "no"}) == "${b}"


@pytest.mark.parametrize(
    ("names", "invalid"),
    [
        (["cluster_env", "_x", "X1"], []),
        (["my-var", "1abc", "ok", "é"], ["1abc", "my-var", "é"]),  # ASCII letters only, as Go's [:alpha:]
    ],
)
def test_variable_names(names: list[str], invalid: list[str]) -> None:
    assert invalid_names(dict.fromkeys(names, "v")) == invalid


@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [
        ("*.gz", "a/b.tar.gz", True),  # envsubst's '*' crosses '/'
        ("a?c", "a/c", True),
        ("[^a]*", "abc", False),
        ("[a-c]x", "bx", True),
        ("[c-a]x", "bx", False),  # an inverted range matches nothing
        ("\\*", "*", True),
        ("[", "a", None),  # malformed
        ("a\\", "a", None),
    ],
)
def test_glob(pattern: str, name: str, matched: bool | None) -> None:
    assert glob_match(pattern, name) is matched
