"""YAML read as kustomize reads it, with the real ``kubectl kustomize`` as the oracle.

Every case is written into a kustomization folder. Where kustomize builds it, fluxops must read
it too, and kustomize itself checks fluxops' values: each object's fields go back into the build as
JSON-patch ``test`` operations, which fail unless kustomize holds exactly that JSON value (a string
"yes" is not true, 1000 is not 1000.0). Where kustomize fails, fluxops reports a parse error at the
right line.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxops.errors import LayoutError
from fluxops.layout import report
from fluxops.layout.kustomize import Builder, OutputLoader, kubectl
from fluxops.layout.roundtrip import load_docs
from fluxops.layout.sources import LineDict, YamlSyntaxError, line_of, load_all, read_sources
from fluxops.layout.validate import validate
from fluxops.layout.yaml_compat import BuildOutputLoader, SubstitutedLoader, go_scalar, go_timestamp
from tests.layout_fixtures import THIS_REPO, copy_tree

HEAD = "apiVersion: example.com/v1\nkind: Thing\nmetadata:\n  name: a\n"


def kustomize(folder: Path) -> subprocess.CompletedProcess[str]:
    """``kubectl kustomize`` of ``folder``, as the builds run it."""
    return subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False
    )


def case_folder(root: Path, text: bytes | str, extra: str = "") -> Path:
    """A kustomization folder whose only resource ``r.yaml`` holds ``text``."""
    folder = root / "case"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text("resources:\n  - r.yaml\n" + extra, encoding="utf-8")
    data = text.encode("utf-8") if isinstance(text, str) else text
    (folder / "r.yaml").write_bytes(data)
    return folder


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: kustomize's ``test`` compares strings and numbers as text."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{go_json(k)}:{go_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, str):
        escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
        return (
            '"'
            + "".join(
                escapes.get(c) or (f"\\u{ord(c):04x}" if c < " " or c in "<>&\u2028\u2029" else c)
                for c in value
            )
            + '"'
        )
    if isinstance(value, float):
        exact = Decimal(repr(value))
        if value and not 1e-6 <= abs(value) < 1e21:
            return format(exact, "e")
        text = format(exact, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return json.dumps(value)


def value_tests(docs: list[Any]) -> str:
    """Patches that make kustomize test every field of every object against the value given here."""
    patches = []
    for doc in docs:
        ops = [{"op": "test", "path": "/metadata/name", "value": doc["metadata"]["name"]}]
        ops += [{"op": "test", "path": f"/{k}", "value": v} for k, v in doc.items() if k != "metadata"]
        target = {"kind": doc["kind"], "name": doc["metadata"]["name"]}
        patches.append({"target": target, "patch": go_json(ops)})
    return "patches: " + json.dumps(patches) + "\n"


def read(text: bytes | str) -> list[Any]:
    """fluxops' objects of a resource file (empty documents dropped, as kustomize drops them)."""
    raw = text.decode("utf-8") if isinstance(text, bytes) else text
    return [d for d in load_all(raw) if d is not None]


def assert_kustomize_agrees(tmp_path: Path, text: bytes | str) -> list[Any]:
    """kustomize builds ``text``, fluxops reads it, and kustomize holds every value fluxops read."""
    built = kustomize(case_folder(tmp_path, text))
    assert built.returncode == 0, built.stderr
    docs = read(text)
    assert len(docs) == len([d for d in yaml.load_all(built.stdout, Loader=BuildOutputLoader) if d])
    checked = kustomize(case_folder(tmp_path, text, value_tests(docs)))
    assert checked.returncode == 0, f"kustomize holds other values: {checked.stderr}\nfluxops read {docs}"
    return docs


ACCEPTED = {
    "redefined anchor": HEAD + "spec:\n  x: &v one\n  y: *v\n  z: &v two\n  w: *v\n",
    "= as a value": HEAD + "spec:\n  x: =\n  y: ==\n  args: [--flag, =, a=b]\n",
    "custom tags": HEAD
    + "spec:\n  ref: !Ref foo\n  secret: !secret bar\n  number: !Ref 123\n  empty: !Ref\n"
    + '  py: !!python/name:os.system ""\n  mapping: !Custom {x: 1}\n  list: !Custom [1, two]\n',
    "core tags": HEAD
    + 'spec:\n  a: !!binary aGk=\n  b: !!int "12"\n  c: !!str 12\n  d: !!float 1\n  e: !!set {a, b}\n'
    + "  f: !!omap [a: 1, b: 2]\n  g: !!timestamp 2001-12-14\n  h: !!str 2001-12-14\n  i: !!bool true\n",
    "merge keys": HEAD
    + "spec:\n  base: &b {a: 1, b: 2}\n  other: &o {b: 5, c: 6}\n  explicit_first:\n    b: 3\n    <<: *b\n"
    + "  merged_list:\n    <<: [*o, *b]\n    c: 9\n  merged_after:\n    <<: *b\n    b: 4\n",
    "YAML 1.1 booleans are strings": HEAD
    + "spec:\n  a: yes\n  b: no\n  c: on\n  d: off\n  e: y\n  f: n\n  g: Yes\n  h: OFF\n"
    + "  i: true\n  j: False\n  k: TRUE\n  l: tRUE\n",
    "integers": HEAD
    + "spec:\n  octal: 0755\n  octal12: 0o755\n  hex: 0x1F\n  binary: 0b101\n  minus_binary: -0b101\n"
    + "  underscores: 1_000\n  plus: +1\n  minus_zero: -0\n  not_octal: 08\n  big: 12345678901234567890\n"
    + "  bigger: 123456789012345678901234\n  negative_big: -12345678901234567890\n  trailing: 1_\n"
    + "  upper: 0X1f\n  quoted: '0755'\n",
    "sexagesimal is a string": HEAD + "spec:\n  a: 1:20\n  b: 190:20:30\n  c: -1:30\n",
    "floats": HEAD
    + "spec:\n  a: 1e3\n  b: 1.0\n  c: .5\n  d: 1e21\n  e: 1.5e-7\n  f: 1.\n  g: 0.1\n  h: 1_0.5\n"
    + "  i: 0x1p-2\n  j: 1e-7\n  k: 123456.0\n  l: 1e20\n  m: +.5\n  n: 1.5e300\n",
    "timestamps": HEAD
    + "spec:\n  a: 2001-12-14\n  b: 2001-12-14t21:59:43.10-05:00\n  c: 2001-12-14 21:59:43.10\n"
    + "  d: 2001-12-14 21:59:43.10 -5\n  e: 2001-13-01\n  f: 2001-02-30\n  g: 2001-12-14T21:59:43\n"
    + "  h: 2001-1-2T1:2:3.1234567891Z\n  i: 2001-12-14T21:59:43+00:00\n  j: 2001-12-14T24:00:00Z\n"
    + "  k: 2001-12-14T21:59:43,5Z\n  l: '2001-12-14'\n  m: 2000-02-29\n  n: 2001-12-14T21:59:43+05:30\n",
    "null and empty": HEAD + "spec:\n  a: ~\n  b: null\n  c:\n  d: Null\n  e: {x, y: , z: ~}\n  f: [a, ]\n",
    "BOM": b"\xef\xbb\xbf" + HEAD.encode() + b"data:\n  x: y\n",
    "tabs after values": HEAD + "spec:\n  a: 1\t\n  b: a\tb\n  c:\tc\n  d: 2\t# comment\n",
    "comments only": "# nothing here\n# at all\n",
    "separators with comments and empty documents": "--- # first\n"
    + HEAD
    + "---   \n---\t# x\n# only a comment\n---\n"
    + HEAD.replace("name: a", "name: b"),
    "--- !!map on the first line": "--- !!map\n" + HEAD,
    "document end marker": HEAD + "...\n" + HEAD.replace("name: a", "name: b"),
    "strings JSON escapes": HEAD + 'spec:\n  a: "a<b&c>"\n  b: é\n  c: "tab\\there\\u2028"\n  d: "\\x01"\n',
    "CRLF": (HEAD + "data:\n  x: |\n    l1\n    l2\n  y: yes\n---\n" + HEAD.replace("name: a", "name: b"))
    .replace("\n", "\r\n")
    .encode(),
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_what_kustomize_builds_fluxops_reads_with_kustomize_values(tmp_path: Path, text: str | bytes) -> None:
    assert_kustomize_agrees(tmp_path, text)


def test_the_oracle_refuses_a_wrong_value(tmp_path: Path) -> None:
    docs = read(ACCEPTED["YAML 1.1 booleans are strings"])
    docs[0]["spec"]["a"] = True
    checked = kustomize(case_folder(tmp_path, ACCEPTED["YAML 1.1 booleans are strings"], value_tests(docs)))
    assert checked.returncode != 0 and "test failed" in checked.stderr


def test_values_come_out_as_kustomize_holds_them() -> None:
    spec = read(ACCEPTED["integers"])[0]["spec"]
    assert (spec["octal"], spec["octal12"], spec["not_octal"], spec["quoted"]) == (493, 493, 8, "0755")
    assert read(ACCEPTED["YAML 1.1 booleans are strings"])[0]["spec"]["a"] == "yes"
    floats = read(ACCEPTED["floats"])[0]["spec"]
    assert type(floats["a"]) is int and type(floats["d"]) is float and floats["i"] == "0x1p-2"
    stamps = read(ACCEPTED["timestamps"])[0]["spec"]
    assert stamps["a"] == "2001-12-14T00:00:00Z" and stamps["b"] == "2001-12-14T21:59:43.1-05:00"
    assert stamps["d"] == "2001-12-14 21:59:43.10 -5" and stamps["g"] == "2001-12-14T21:59:43"
    tags = read(ACCEPTED["custom tags"])[0]["spec"]
    assert tags["ref"] == "foo" and tags["number"] == "123" and tags["mapping"] == {"x": 1}
    assert read(ACCEPTED["= as a value"])[0]["spec"]["x"] == "="
    assert read(ACCEPTED["CRLF"])[0]["data"]["x"] == "l1\nl2\n"


def test_minus_zero_is_the_zero_kustomize_prints(tmp_path: Path) -> None:
    text = HEAD + "spec:\n  z: -0.0\n"
    assert "  z: 0\n" in kustomize(case_folder(tmp_path, text)).stdout
    assert read(text)[0]["spec"]["z"] == 0


REFUSED = {
    "duplicate key": (HEAD + 'data:\n  x: "1"\n  x: "2"\n', 7, "already defined at line 6"),
    "duplicate nested key": (HEAD + "  labels:\n    a: b\n    c: d\n    a: e\n", 8, "'a' already defined"),
    "duplicate key, quoted and not": (HEAD + 'data:\n  "1": a\n  1: b\n', 7, "'1' already defined"),
    "two merge keys": (
        HEAD + "  labels: &l\n    a: b\n  annotations:\n    <<: *l\n    x: y\n    <<: *l\n",
        10,
        "'<<' already defined",
    ),
    "tab indentation": (HEAD.replace("  name: a", "\tname: a"), 4, "cannot start any token"),
    "content after ---": (HEAD + "--- !!map\n" + HEAD, 5, "invalid document separator '--- !!map'"),
    "a document on the --- line": (HEAD + "--- kind: Thing\n", 5, "invalid document separator"),
    "---text": (HEAD + "---foo: 1\n", 5, "invalid document separator '---foo: 1'"),
    "anchor from another document": (
        HEAD + "data:\n  x: &v 1\n---\n" + HEAD + "data:\n  x: *v\n",
        13,
        "alias",
    ),
    "unclosed flow sequence": (HEAD + "data:\n  x: [1\n  y: 2\n", 7, "flow sequence"),
    "directive before ---": ("%YAML 1.1\n---\n" + HEAD, 2, "document start"),
}


@pytest.mark.parametrize(("text", "line", "words"), REFUSED.values(), ids=REFUSED.keys())
def test_what_kustomize_refuses_is_a_parse_error_at_its_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    assert kustomize(case_folder(tmp_path, text)).returncode != 0
    with pytest.raises(YamlSyntaxError) as exc:
        load_all(text)
    assert exc.value.line == line and words in str(exc.value)


def test_line_numbers_count_every_piece_and_merge(tmp_path: Path) -> None:
    second_spec = "spec:\n  base: &s {a: 1}\n  m:\n    <<: *s\n    b: 2\n"
    text = "--- # head\n" + HEAD + "spec:\n  a: 1\n---\n# gap\n\n" + HEAD + second_spec
    first, second = read(text)
    assert (first.line, line_of(first, "spec", "a")) == (2, 7)
    assert (second.line, line_of(second, "spec", "m", "a"), line_of(second, "spec", "m", "b")) == (11, 16, 19)


def test_a_later_document_after_an_end_marker_is_ignored_as_kustomize_ignores_it(tmp_path: Path) -> None:
    b, c = HEAD.replace("name: a", "name: b"), HEAD.replace("name: a", "name: c")
    text = HEAD + "...\n---\n" + b + "...\n" + c
    assert [d["metadata"]["name"] for d in read(text)] == ["a", "b"]
    assert "name: c" not in kustomize(case_folder(tmp_path, text)).stdout


def test_kustomization_file_keeps_the_last_of_two_keys(tmp_path: Path) -> None:
    folder = case_folder(tmp_path, HEAD, "namePrefix: x-\nnamePrefix: y-\n")
    assert "name: y-a" in kustomize(folder).stdout
    text = (folder / "kustomization.yaml").read_text(encoding="utf-8")
    assert load_all(text, resource=False)[0]["namePrefix"] == "y-"
    with pytest.raises(YamlSyntaxError):
        load_all(text)


def test_a_generator_input_is_text_to_kustomize(tmp_path: Path) -> None:
    config = "homeassistant:\n  name: !secret name\n  name: twice\n--- !!map\na: 1\n--- junk\n"
    generator = "configMapGenerator:\n  - name: conf\n    files:\n      - conf.yaml\n"
    folder = case_folder(tmp_path, HEAD, generator)
    (folder / "conf.yaml").write_text(config, encoding="utf-8")
    assert kustomize(folder).returncode == 0
    sources = read_sources(tmp_path, [folder])
    assert sources.errors == {}
    assert sources.docs["case/conf.yaml"][0].data == {"homeassistant": {"name": "twice"}}
    (folder / "other.yaml").write_text(config, encoding="utf-8")  # no generator reads it
    assert "case/other.yaml" in read_sources(tmp_path, [folder]).errors


def test_build_output_parses_where_kustomize_succeeds(tmp_path: Path) -> None:
    text = ACCEPTED["= as a value"] + "---\n" + ACCEPTED["custom tags"].replace("name: a", "name: b")
    result = Builder(None).build(case_folder(tmp_path, text))
    assert result.ok, result.error
    assert result.objects == json.loads(json.dumps(read(text)))


def test_flux_reads_substituted_text_as_go_yaml_v2() -> None:
    text = "a: yes\nb: =\nc: 1:20\nd: 0o17\ne: 2001-12-14\nf: !Ref x\ng: 1.0\n"
    assert yaml.load(text, Loader=SubstitutedLoader) == {
        "a": True,
        "b": "=",
        "c": "1:20",
        "d": 15,
        "e": "2001-12-14",
        "f": "x",
        "g": 1,
    }
    assert OutputLoader is SubstitutedLoader


def test_scalars_as_go_yaml_resolves_them() -> None:
    assert go_scalar("yes") == "yes" and go_scalar("yes", v2=True) is True
    assert go_scalar("12", "tag:yaml.org,2002:float") == 12
    with pytest.raises(ValueError, match="as a !!int"):
        go_scalar("yes", "tag:yaml.org,2002:int")
    assert go_timestamp("2001-12-14T21:59:43+00:60") == "2001-12-14T21:59:43+01:00"
    assert go_timestamp("2001-12-14T21:59:43+25:00") is None


def test_source_documents_carry_lines() -> None:
    docs = load_all(HEAD + "spec:\n  list:\n    - a\n    - b\n")
    assert isinstance(docs[0], LineDict) and line_of(docs[0], "spec", "list", 1) == 8


QUIRKS = """--- # what kustomize accepts and a strict YAML 1.1 reader does not
apiVersion: v1
kind: ConfigMap
metadata:
  name: quirks
  namespace: default
  labels: &labels
    app: quirks
  annotations:
    <<: *labels
data:
  equals: =
  answer: yes
  when: 2001-12-14
  first: &value one
  again: *value
  second: &value two
  more: *value
  tagged: !Ref foo
"""


def test_a_tree_with_kustomize_quirks_validates(tmp_path: Path) -> None:
    root = copy_tree(tmp_path / "repo")
    app = root / "k8s/clusters/lab/apps/quirks"
    app.mkdir()
    (app / "kustomization.yaml").write_text(
        "resources:\n  - quirks.yaml\nconfigMapGenerator:\n  - name: conf\n    namespace: default\n"
        "    files:\n      - configuration.yaml\n",
        encoding="utf-8",
    )
    (app / "quirks.yaml").write_text(QUIRKS, encoding="utf-8")
    config = "homeassistant:\n  name: !secret name\n  name: twice\nsecrets: !include secrets.yaml\n"
    (app / "configuration.yaml").write_text(config, encoding="utf-8")
    apps = root / "k8s/clusters/lab/apps/kustomization.yaml"
    apps.write_text(apps.read_text(encoding="utf-8") + "  - quirks\n", encoding="utf-8")
    tree, findings = validate(root, layout=THIS_REPO)
    assert findings.errors == [], report.text(tree, findings)
    (phase,) = [p for p in tree.clusters["lab"].phases if p.name == "apps"]
    (built,) = [o for o in phase.objects if o["metadata"]["name"] == "quirks"]
    assert built["data"] == read(QUIRKS)[0]["data"]
    assert built["data"]["answer"] == "yes" and built["data"]["when"] == "2001-12-14T00:00:00Z"


def test_a_file_to_edit_with_a_key_given_twice_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "kustomization.yaml"
    path.write_text("resources:\n  - a.yaml\nnamePrefix: x-\nnamePrefix: y-\n", encoding="utf-8")
    with pytest.raises(LayoutError, match=r"kustomization.yaml:4: found duplicate key \"namePrefix\""):
        load_docs(path)
    path.write_text(HEAD + "data:\n  a: &v 1\n  b: &v 2\n  c: *v\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_docs(path)[0]["data"]["c"] == 2
