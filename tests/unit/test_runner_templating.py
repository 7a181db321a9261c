"""Jinja2 in playbooks: types kept, undefined names refused, secrets never lost nor shown."""

from __future__ import annotations

import pytest

from fluxops.masking import Secret
from fluxops.runner import templating
from fluxops.runner.templating import Templar

VARS = {
    "ports": [80, 443],
    "count": 3,
    "name": "n5",
    "enabled": False,
    "nested": {"a": {"b": "deep"}},
    "token": Secret("s3cr3t-token"),
    "version": "1.10",
}


def test_one_expression_keeps_its_type() -> None:
    t = Templar(VARS)
    assert t.render("{{ ports }}") == [80, 443]
    assert t.render("{{ count + 1 }}") == 4
    assert t.render("{{ enabled }}") is False
    assert t.render("{{ nested.a }}") == {"b": "deep"}
    assert t.render("{{ version }}") == "1.10"  # a string that looks like a number stays a string


def test_text_around_an_expression_gives_a_string() -> None:
    t = Templar(VARS)
    assert t.render("port {{ ports[0] }}") == "port 80"
    assert t.render("{{ count }}{{ count }}") == "33"
    assert t.render(" {{ count }}") == " 3"
    assert t.render({"k": ["{{ name }}-x", 1, None]}) == {"k": ["n5-x", 1, None]}
    assert t.render("no template") == "no template"


def test_undefined_names_raise() -> None:
    t = Templar(VARS)
    with pytest.raises(templating.UndefinedError, match="'missing' is undefined"):
        t.render("{{ missing }}")
    with pytest.raises(templating.UndefinedError):
        t.render("x {{ nested.a.nope }}")
    with pytest.raises(templating.UndefinedError):
        t.truth("missing > 1")


def test_a_secret_stays_a_secret_through_a_template() -> None:
    t = Templar(VARS)
    whole = t.render("{{ token }}")
    assert isinstance(whole, Secret) and whole.reveal() == "s3cr3t-token"
    mixed = t.render("Bearer {{ token }}")
    assert isinstance(mixed, Secret) and mixed.reveal() == "Bearer s3cr3t-token"
    upper = t.render("{{ token | upper }}")
    assert isinstance(upper, str) and not isinstance(upper, Secret)  # a transformed value is another value
    assert str(t.render(["{{ name }}", "{{ token }}"])[1]) == "***"
    assert t.secrets == ["s3cr3t-token"]


def test_template_files_render_secrets_in_clear() -> None:
    t = Templar(VARS)
    assert t.render_text("token: {{ token }}\nname: {{ name }}\n") == "token: s3cr3t-token\nname: n5\n"


def test_with_vars_layers_over_the_variables() -> None:
    t = Templar(VARS).with_vars({"name": "phx1", "item": Secret("other-secret")})
    assert t.render("{{ name }}") == "phx1"
    assert isinstance(t.render("{{ item }}"), Secret)
    assert set(t.secrets) == {"s3cr3t-token", "other-secret"}
    assert Templar(VARS).render("{{ name }}") == "n5"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (True, True),
        (False, False),
        ("count > 2", True),
        ("name == 'phx1'", False),
        (["count > 2", "not enabled"], True),
        (["count > 2", "enabled"], False),
        ("missing is defined", False),
        ("missing is not defined", True),
        ("'{{ count }}' == '3'", True),
    ],
)
def test_conditions(condition: object, expected: bool) -> None:
    assert Templar(VARS).truth(condition) is expected


def test_names_a_template_needs() -> None:
    assert templating.names_in("{{ a }} {{ b.c }} {{ d | default(1) }}") == {"a", "b"}
    assert templating.names_in("{% for x in xs %}{{ x }}{% endfor %}{% set y = 1 %}{{ y }}") == {"xs"}
    assert templating.names_in("{{ range(3) | list }} {{ e if e is defined else 0 }}") == set()
    assert templating.names_in({"k": ["{{ f }}", 1], "l": "plain {not a template}"}) == {"f"}
    assert templating.names_in_condition("g and h is defined") == {"g"}
    assert templating.names_in_condition([True, "i > 1"]) == {"i"}
    with pytest.raises(templating.TemplateError):
        templating.names_in("{{ broken")


def test_ansible_filters() -> None:
    t = Templar({"v": "yes", "d": {"b": 1, "a": 2}, "p": "/etc/rancher/k3s/config.yaml"})
    assert t.render("{{ v | bool }}") is True
    assert t.render("{{ d | to_json }}") == '{"a": 2, "b": 1}'
    assert t.render("{{ 'x' | b64encode }}") == "eA=="
    assert t.render("{{ p | basename }} {{ p | dirname }}") == "config.yaml /etc/rancher/k3s"
    assert t.render("{{ p | regex_replace('k3s', 'k8s') }}") == "/etc/rancher/k8s/config.yaml"


def test_a_secret_trimmed_or_cut_into_lines_is_still_a_secret() -> None:
    t = Templar({"out": Secret("K10secretvalue\n"), "two": Secret("line-one\nline-two\n")})
    trimmed = t.render("{{ out | trim }}")
    assert isinstance(trimmed, Secret) and trimmed.reveal() == "K10secretvalue"
    second = t.render("{{ two.splitlines()[1] }}")
    assert isinstance(second, Secret) and second.reveal() == "line-two"
