"""File modules from data: facts in, commands out (file, template, line, get_url, fetch, wait_for)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fluxops.runner import modules
from fluxops.runner.module import ArgumentError, Change, Context, Module
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import PUT_SCRIPT, FileState, parse_file_state
from fluxops.runner.modules._lines import ensure_line, remove_lines
from fluxops.runner.modules.fetch import Fetch
from fluxops.runner.modules.get_url import Downloaders, parse_downloaders
from fluxops.runner.modules.wait_for import Readiness, parse_readiness
from tests.unit.module_harness import context

ABSENT = FileState("absent")


def module(name: str) -> type[Module]:
    cls = modules.get(name)
    assert cls is not None, name
    return cls


def plan(name: str, raw: dict[str, Any], facts: dict[str, Any], ctx: Context | None = None) -> Change | None:
    cls = module(name)
    return cls().plan(cls.validate(raw), facts, ctx or context(Path("/nonexistent")))


def a_file(content: bytes, mode: str = "0644", owner: str = "root", uid: int = 0) -> FileState:
    return FileState(
        "file",
        mode=mode,
        uid=uid,
        owner=owner,
        gid=0,
        group="root",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
    )


def put_args(change: Change) -> tuple[str, ...]:
    """The put step's arguments after the script: path, mode, owner spec, sha256, mkdir flag, source."""
    (step,) = change.steps
    assert step.argv[:4] == ("sh", "-c", PUT_SCRIPT, "sh")
    return step.argv[4:]


def test_every_module_of_the_issue_is_registered() -> None:
    expected = {"command", "file", "template", "line", "sysctl", "modprobe", "package", "service"}
    expected |= {"get_url", "fetch", "wait_for"}
    assert expected <= set(modules.names())


# --- argument errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("file", {"path": "relative/x"}, "not an absolute path"),
        ("file", {"path": "/x", "mode": 644}, "write the mode quoted"),
        ("file", {"path": "/x", "mode": "rw-r--r--"}, "not an octal mode"),
        ("file", {"path": "/x", "mode": "0999"}, "not an octal mode"),
        ("file", {"path": "/x", "state": "directory", "content": "x"}, "content goes with state file"),
        ("file", {"path": "/x", "state": "absent", "mode": "0644"}, "make no sense with state absent"),
        ("file", {"path": "/x", "state": "link"}, "is not one of"),
        ("file", {"path": "/x", "owner": "a b"}, "not a user or group"),
        ("file", {"path": "/x", "contents": "x"}, "has no argument contents"),
        ("template", {"src": "../secret", "dest": "/x"}, "under the playbook's templates/"),
        ("template", {"src": "/etc/passwd", "dest": "/x"}, "under the playbook's templates/"),
        ("template", {"dest": "/x"}, "needs argument src"),
        ("line", {"path": "/x"}, "state present needs line"),
        ("line", {"path": "/x", "state": "absent"}, "needs line or regexp"),
        ("line", {"path": "/x", "line": "a\nb"}, "one line only"),
        ("line", {"path": "/x", "line": "a", "regexp": "("}, "not a valid regular expression"),
        ("line", {"path": "/x", "line": "a", "create": "maybe"}, "expected a boolean"),
        ("get_url", {"dest": "/x"}, "exactly one of url and src"),
        ("get_url", {"dest": "/x", "url": "http://a/b", "src": "b"}, "exactly one of url and src"),
        ("get_url", {"dest": "/x", "url": "file:///etc/passwd"}, "not an http or https URL"),
        ("get_url", {"dest": "/x", "url": "https://a/b", "sha256": "abc"}, "64 hexadecimal"),
        ("get_url", {"dest": "/x", "url": "https://a/b", "timeout": 0}, "at least 1 second"),
        ("fetch", {"src": "x", "dest": "y"}, "not an absolute path"),
        ("fetch", {"src": "/x", "dest": "y", "replace": {"a": 1}}, "not a substitution"),
        ("fetch", {"src": "/x", "dest": "y", "replace": {"": "b"}}, "not a substitution"),
        ("fetch", {"src": "/x", "dest": "y", "mode": 600}, "write the mode quoted"),
        ("wait_for", {}, "exactly one of command and port"),
        ("wait_for", {"port": 70000}, "not a TCP port"),
        ("wait_for", {"port": 80, "host": "a b"}, "not a host name"),
        ("wait_for", {"command": "true", "sleep": 0}, "sleep at least 1"),
    ],
)
def test_argument_errors(name: str, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        module(name).validate(raw)


def test_arguments_are_normalized() -> None:
    file_args = module("file").validate({"path": "/x", "mode": "644"})
    assert file_args["mode"] == "0644"
    digest = "AB" * 32
    raw = {"url": "https://a/b", "dest": "/x", "sha256": f"sha256:{digest}"}
    get_args = module("get_url").validate(raw)
    assert get_args["sha256"] == digest.lower()


# --- the file fact's parser --------------------------------------------------------------------


def test_parse_file_state_of_printed_outputs() -> None:
    out = "kind=file\nattrs=600 1000 alice 1000 alice 6\ncontent:\naGVsbG8K\n"
    state = parse_file_state(out, 0)
    assert state == FileState(
        "file", "0600", 1000, "alice", 1000, "alice", 6, hashlib.sha256(b"hello\n").hexdigest(), b"hello\n"
    )
    assert parse_file_state("kind=absent\n", 0) == ABSENT
    big = parse_file_state(f"kind=file\nattrs=644 0 root 0 root 5000000\nsha256={'a' * 64}\n", 0)
    assert big.content is None and big.sha256 == "a" * 64 and big.text is None
    with pytest.raises(ValueError, match="unexpected output"):
        parse_file_state("sh: 1: stat: not found\n", 127)


# --- file --------------------------------------------------------------------------------------


def test_file_create_writes_content_on_stdin_never_in_argv() -> None:
    change = plan("file", {"path": "/etc/app.conf", "content": "secret-ish value\n"}, {"path": ABSENT})
    assert change is not None
    assert put_args(change) == ("/etc/app.conf", "0644", "", "", "", "cat")
    assert change.steps[0].stdin == b"secret-ish value\n"
    assert all("secret-ish" not in arg for arg in change.steps[0].argv)
    assert change.diff.startswith("--- /dev/null\n+++ /etc/app.conf (after)\n")
    assert change.summary == "create /etc/app.conf (17 bytes, 0644)"


def test_file_with_the_same_content_is_ok() -> None:
    assert plan("file", {"path": "/a", "content": "x\n"}, {"path": a_file(b"x\n")}) is None
    assert (
        plan("file", {"path": "/a", "content": "x\n", "mode": "644", "owner": "0"}, {"path": a_file(b"x\n")})
        is None
    )


def test_file_update_keeps_mode_and_owner_when_not_asked() -> None:
    change = plan("file", {"path": "/a", "content": "new\n"}, {"path": a_file(b"old\n", mode="0600", uid=7)})
    assert change is not None
    assert put_args(change)[:3] == ("/a", "0600", "7:0")
    assert "-old\n+new\n" in change.diff


def test_file_attributes_only() -> None:
    change = plan("file", {"path": "/a", "mode": "0600", "owner": "k3s"}, {"path": a_file(b"x")})
    assert change is not None
    assert [s.argv for s in change.steps] == [("chown", "k3s", "/a"), ("chmod", "0600", "/a")]
    assert change.summary == "/a: owner root -> k3s, mode 0644 -> 0600"
    group_only = plan("file", {"path": "/a", "group": "adm"}, {"path": a_file(b"x")})
    assert group_only is not None and group_only.steps[0].argv == ("chown", ":adm", "/a")


def test_file_without_content_creates_an_empty_file_or_keeps_the_one_there() -> None:
    change = plan("file", {"path": "/a"}, {"path": ABSENT})
    assert change is not None and change.steps[0].stdin == b""
    assert plan("file", {"path": "/a"}, {"path": a_file(b"whatever")}) is None


def test_file_binary_content_has_a_note_instead_of_a_diff() -> None:
    change = plan("file", {"path": "/a", "content": "text\n"}, {"path": a_file(b"\xff\xfe")})
    assert change is not None and "not shown (not UTF-8" in change.diff


def test_file_directory() -> None:
    change = plan(
        "file", {"path": "/d", "state": "directory", "owner": "k3s", "group": "k3s"}, {"path": ABSENT}
    )
    assert change is not None
    assert change.steps[0].argv == ("install", "-d", "-m", "0755", "-o", "k3s", "-g", "k3s", "/d")
    folder = FileState("directory", "0755", 0, "root", 0, "root", 4096)
    assert plan("file", {"path": "/d", "state": "directory"}, {"path": folder}) is None
    chmod = plan("file", {"path": "/d", "state": "directory", "mode": "0700"}, {"path": folder})
    assert chmod is not None and chmod.steps[0].argv == ("chmod", "0700", "/d")
    with pytest.raises(ModuleError, match="not a folder"):
        plan("file", {"path": "/d", "state": "directory"}, {"path": a_file(b"")})


def test_file_absent() -> None:
    assert plan("file", {"path": "/a", "state": "absent"}, {"path": ABSENT}) is None
    gone = plan("file", {"path": "/a", "state": "absent"}, {"path": a_file(b"bye\n")})
    assert gone is not None and gone.steps[0].argv == ("rm", "-f", "/a") and "-bye" in gone.diff
    folder = FileState("directory", "0755", 0, "root", 0, "root", 4096)
    tree = plan("file", {"path": "/d", "state": "absent"}, {"path": folder})
    assert tree is not None and tree.steps[0].argv == ("rm", "-rf", "/d")
    link = plan("file", {"path": "/l", "state": "absent"}, {"path": FileState("link")})
    assert link is not None and link.steps[0].argv == ("rm", "-f", "/l")


def test_file_over_special_files_is_refused() -> None:
    with pytest.raises(ModuleError, match="special file"):
        plan("file", {"path": "/dev/null", "content": "x"}, {"path": FileState("other", "0666")})


# --- template ----------------------------------------------------------------------------------


def test_template_renders_with_the_host_variables(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "k3s.yaml.j2").write_text(
        "disable:\n{% for d in k3s_disable %}- {{ d }}\n{% endfor %}"
    )
    ctx = context(tmp_path, {"k3s_disable": ["traefik", "servicelb"]})
    change = plan(
        "template", {"src": "k3s.yaml.j2", "dest": "/etc/rancher/k3s/config.yaml"}, {"dest": ABSENT}, ctx
    )
    assert change is not None
    assert change.steps[0].stdin == b"disable:\n- traefik\n- servicelb\n"
    same = a_file(b"disable:\n- traefik\n- servicelb\n")
    assert (
        plan("template", {"src": "k3s.yaml.j2", "dest": "/etc/rancher/k3s/config.yaml"}, {"dest": same}, ctx)
        is None
    )


def test_template_with_an_undefined_variable_fails(tmp_path: Path) -> None:
    import jinja2

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("{{ nope }}\n")
    with pytest.raises(jinja2.UndefinedError):
        plan("template", {"src": "t.j2", "dest": "/x"}, {"dest": ABSENT}, context(tmp_path))


# --- line --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "regexp", "expected"),
    [
        ("a\nb\n", "c", None, "a\nb\nc\n"),
        ("a\nb", "c", None, "a\nb\nc\n"),
        ("", "c", None, "c\n"),
        ("a\nc\n", "c", None, "a\nc\n"),
        ("x=1\ny=2\nx=3\n", "x=9", r"^x=", "x=1\ny=2\nx=9\n"),  # the last match is replaced
        ("x=1\r\ny=2\r\n", "x=9", r"^x=", "x=9\r\ny=2\r\n"),  # its line ending kept
        ("a\nx=9\n", "x=9", r"^x=", "a\nx=9\n"),
        ("a\nb\n", "x=9", r"^x=", "a\nb\nx=9\n"),  # no match: appended
        ("a\nPermitRootLogin no\n", "PermitRootLogin no", r"^#PermitRootLogin", "a\nPermitRootLogin no\n"),
    ],
)
def test_ensure_line_as_lineinfile(text: str, line: str, regexp: str | None, expected: str) -> None:
    assert ensure_line(text, line, regexp) == expected


def test_remove_lines() -> None:
    assert remove_lines("a\nb\na\n", line="a") == "b\n"
    assert remove_lines("x=1\ny=2\nx=3", regexp=r"^x=") == "y=2\n"
    assert remove_lines("a\n", line="b") == "a\n"


def test_line_plans() -> None:
    path = {"path": "/etc/hosts"}
    hosts = a_file(b"127.0.0.1 localhost\n")
    change = plan("line", {**path, "line": "10.0.0.5 n5"}, {"path": hosts})
    assert change is not None and change.steps[0].stdin == b"127.0.0.1 localhost\n10.0.0.5 n5\n"
    assert "+10.0.0.5 n5\n" in change.diff
    assert plan("line", {**path, "line": "127.0.0.1 localhost"}, {"path": hosts}) is None
    assert plan("line", {**path, "regexp": "^10\\.", "state": "absent"}, {"path": hosts}) is None
    assert plan("line", {**path, "line": "x", "state": "absent"}, {"path": ABSENT}) is None
    mode_only = plan("line", {**path, "line": "127.0.0.1 localhost", "mode": "0600"}, {"path": hosts})
    assert mode_only is not None and mode_only.steps[0].argv == ("chmod", "0600", "/etc/hosts")
    with pytest.raises(ModuleError, match="does not exist"):
        plan("line", {**path, "line": "x"}, {"path": ABSENT})
    big = FileState("file", "0644", 0, "root", 0, "root", 5 << 20, "a" * 64)
    with pytest.raises(ModuleError, match="more than"):
        plan("line", {**path, "line": "x"}, {"path": big})


def test_line_keeps_bytes_that_are_not_utf8() -> None:
    change = plan("line", {"path": "/a", "line": "new"}, {"path": a_file(b"caf\xe9\n")})
    assert change is not None and change.steps[0].stdin == b"caf\xe9\nnew\n"


# --- get_url -----------------------------------------------------------------------------------

URL = "https://github.com/k3s-io/k3s/releases/download/v1.30.4%2Bk3s1/k3s"
DIGEST = hashlib.sha256(b"k3s binary").hexdigest()
CURL = Downloaders(curl=True, wget=True)


def test_get_url_downloads_with_curl_checks_sha256_and_never_pipes_to_sh() -> None:
    raw = {"url": URL, "dest": "/usr/local/bin/k3s", "sha256": DIGEST, "mode": "0755"}
    change = plan("get_url", raw, {"dest": ABSENT, "downloaders": CURL})
    assert change is not None
    assert put_args(change) == (
        "/usr/local/bin/k3s", "0755", "", DIGEST, "",
        "curl", "-fsSL", "--proto", "=https,http", "--max-time", "300", URL,
    )  # fmt: skip
    assert "| sh" not in PUT_SCRIPT and "|sh" not in PUT_SCRIPT
    wget = plan("get_url", raw, {"dest": ABSENT, "downloaders": Downloaders(curl=False, wget=True)})
    assert wget is not None and put_args(wget)[5:] == ("wget", "-q", "-T", "300", "-O", "-", URL)
    with pytest.raises(ModuleError, match="neither curl nor wget"):
        plan("get_url", raw, {"dest": ABSENT, "downloaders": Downloaders(curl=False, wget=False)})


def test_get_url_is_ok_when_dest_has_the_sha256() -> None:
    binary = a_file(b"k3s binary", mode="0755")
    raw = {"url": URL, "dest": "/usr/local/bin/k3s", "sha256": DIGEST, "mode": "0755"}
    assert plan("get_url", raw, {"dest": binary, "downloaders": CURL}) is None
    other = a_file(b"older k3s", mode="0755")
    change = plan("get_url", raw, {"dest": other, "downloaders": CURL})
    assert change is not None and change.summary.startswith("replace /usr/local/bin/k3s")
    # without a sha256, an existing file is taken as it is (only its mode is kept right)
    loose = plan("get_url", {"url": URL, "dest": "/x", "mode": "0700"}, {"dest": other, "downloaders": CURL})
    assert loose is not None and [s.argv for s in loose.steps] == [("chmod", "0700", "/x")]


def test_get_url_from_a_local_artifact(tmp_path: Path) -> None:
    (tmp_path / "k3s").write_bytes(b"k3s binary")
    raw = {"src": "k3s", "dest": "/usr/local/bin/k3s"}
    change = plan("get_url", raw, {"dest": ABSENT}, context(tmp_path))
    assert change is not None and change.steps[0].stdin == b"k3s binary"
    assert put_args(change)[:4] == ("/usr/local/bin/k3s", "0644", "", DIGEST)
    assert plan("get_url", raw, {"dest": a_file(b"k3s binary")}, context(tmp_path)) is None
    with pytest.raises(ArgumentError, match="no file"):
        get_url = module("get_url")
        get_url().facts(get_url.validate({"src": "nope", "dest": "/x"}), context(tmp_path))


def test_parse_downloaders() -> None:
    assert parse_downloaders("curl\nwget\n", 0) == Downloaders(True, True)
    assert parse_downloaders("wget\n", 0) == Downloaders(False, True)
    assert parse_downloaders("", 1) == Downloaders(False, False)


# --- fetch -------------------------------------------------------------------------------------


def test_fetch_plans(tmp_path: Path) -> None:
    kubeconfig = a_file(b"server: https://127.0.0.1:6443\n")
    raw = {"src": "/etc/rancher/k3s/k3s.yaml", "dest": "kube/lab.yaml", "replace": {"127.0.0.1": "10.0.0.5"}}
    change = plan("fetch", raw, {"src": kubeconfig}, context(tmp_path))
    local_copy = tmp_path / "kube" / "lab.yaml"
    assert change is not None and change.steps == ()
    assert change.fetch == (("/etc/rancher/k3s/k3s.yaml", str(local_copy)),)
    assert change.diff == ""  # a kubeconfig holds credentials: never shown
    fetch = Fetch
    fetched = fetch().fetched(fetch.validate(raw), kubeconfig.content or b"")
    assert fetched == (b"server: https://10.0.0.5:6443\n", 0o600)
    local_copy.parent.mkdir()
    local_copy.write_bytes(b"server: https://10.0.0.5:6443\n")
    local_copy.chmod(0o600)
    assert plan("fetch", raw, {"src": kubeconfig}, context(tmp_path)) is None
    local_copy.write_bytes(b"server: https://127.0.0.1:6443\n")
    stale = plan("fetch", raw, {"src": kubeconfig}, context(tmp_path))
    assert stale is not None and "content differs" in stale.summary


def test_fetch_of_a_missing_file(tmp_path: Path) -> None:
    raw = {"src": "/etc/rancher/k3s/k3s.yaml", "dest": str(tmp_path / "lab.yaml")}
    with pytest.raises(ModuleError, match="is not a file on the host"):
        plan("fetch", raw, {"src": ABSENT}, context(tmp_path))
    checked = plan("fetch", raw, {"src": ABSENT}, context(tmp_path, check=True))
    assert checked is not None and "not on the host yet" in checked.summary
    with pytest.raises(ModuleError, match="not UTF-8"):
        plan("fetch", {**raw, "replace": {"a": "b"}}, {"src": a_file(b"\xff")}, context(tmp_path))


# --- wait_for ----------------------------------------------------------------------------------

READY_TOOLS = Readiness(ready=False, bash=True, timeout=True)


def test_wait_for_plans() -> None:
    assert plan("wait_for", {"port": 6443}, {"ready": Readiness(True, True, True)}) is None
    change = plan("wait_for", {"port": 6443, "timeout": 60, "delay": 5}, {"ready": READY_TOOLS})
    assert change is not None and len(change.steps) == 1
    argv = change.steps[0].argv
    assert argv[:2] == ("sh", "-c") and argv[4:7] == ("port 127.0.0.1:6443", "60", "sh")
    assert argv[9:12] == ("sh", "5", "1")
    assert argv[-2:] == ("127.0.0.1", "6443")
    command = plan("wait_for", {"command": "kubectl get nodes | grep -q Ready"}, {"ready": READY_TOOLS})
    assert command is not None and command.steps[0].argv[-3:] == (
        "sh",
        "-c",
        "kubectl get nodes | grep -q Ready",
    )
    with pytest.raises(ModuleError, match="no bash"):
        plan("wait_for", {"port": 22}, {"ready": Readiness(False, False, True)})
    with pytest.raises(ModuleError, match="no timeout"):
        plan("wait_for", {"command": "true"}, {"ready": Readiness(False, True, False)})


def test_parse_readiness() -> None:
    assert parse_readiness("ready=yes\nbash=yes\ntimeout=yes\n", 0) == Readiness(True, True, True)
    assert parse_readiness("timeout=yes\n", 0) == Readiness(False, False, True)


def test_the_put_script_finds_the_folder_dirname_prints() -> None:
    start = PUT_SCRIPT.index("case $p in")
    folder = PUT_SCRIPT[start : PUT_SCRIPT.index("esac\n") + 5] + 'printf %s "$d"'
    paths = [
        "/x",
        "/a/b",
        "/a/b.c",
        "/a/./b",
        "/a/../b",
        "/a b/c d",
        "/a/b/",
        "//x",
        "/a//b",
        "/a/b//",
        "/-x/y",
    ]
    for path in paths:
        got = subprocess.run(["sh", "-c", f"p=$1\n{folder}", "sh", path], capture_output=True, text=True)
        want = subprocess.run(["dirname", "--", path], capture_output=True, text=True).stdout.rstrip("\n")
        assert (path, got.stdout) == (path, want)


def test_the_put_script_writes_a_file_atomically_with_its_mode(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "f.conf"
    argv = ["sh", "-c", PUT_SCRIPT, "sh", str(dest), "0640", "", "", "1", "cat"]
    subprocess.run(argv, input=b"content\n", check=True)
    assert dest.read_bytes() == b"content\n" and oct(dest.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.conf"]  # no temp file left
    gone = subprocess.run([*argv[:4], str(tmp_path / "none" / "f"), "0644", "", "", "", "cat"], input=b"x")
    assert gone.returncode == 1
