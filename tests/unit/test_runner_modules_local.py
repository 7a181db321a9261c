"""Modules run for real on this machine: fact scripts under sh, plans applied, idempotence in four steps."""

from __future__ import annotations

import grp
import hashlib
import http.server
import os
import pwd
import shutil
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxops.masking import Secret
from fluxops.runner import batch
from fluxops.runner.module import Step
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import file_fact, parse_file_state, put_step
from fluxops.shell import local
from tests.unit.module_harness import Task, context, run_step


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def leftovers(folder: Path) -> list[str]:
    """Temp files a write may have left (they start with a dot)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- file -------------------------------------------------------------------------------------


def test_file_with_content_converges_in_four_steps(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "app.conf"
    target.parent.mkdir()
    first = Task(
        "file", {"path": str(target), "content": "a = 1\n", "mode": "0640"}, context(tmp_path)
    ).converge()
    assert first.summary.startswith(f"create {target}")
    assert "+a = 1" in first.diff
    assert target.read_text() == "a = 1\n"
    assert mode_of(target) == 0o640
    assert leftovers(target.parent) == []


def test_file_update_shows_a_diff_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_text("a = 1\nb = 2\n")
    target.chmod(0o600)
    first = Task("file", {"path": str(target), "content": "a = 1\nb = 3\n"}, context(tmp_path)).converge()
    assert "-b = 2\n+b = 3\n" in first.diff
    assert target.read_text() == "a = 1\nb = 3\n"
    assert mode_of(target) == 0o600


def test_file_owner_group_and_mode_only(tmp_path: Path) -> None:
    target = tmp_path / "owned"
    target.write_text("keep\n")
    target.chmod(0o644)
    args = {"path": str(target), "mode": "0600", "owner": "nobody", "group": "nogroup"}
    first = Task("file", args, context(tmp_path)).converge()
    assert [s.argv[0] for s in first.steps] == ["chown", "chmod"]
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    assert mode_of(target) == 0o600
    assert target.read_text() == "keep\n"


def test_file_directory_and_absent(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    Task("file", {"path": str(folder), "state": "directory", "mode": "0750"}, context(tmp_path)).converge()
    assert folder.is_dir() and mode_of(folder) == 0o750
    (folder / "inside").write_text("x")
    removed = Task("file", {"path": str(tmp_path / "a"), "state": "absent"}, context(tmp_path)).converge()
    assert "everything in it" in removed.summary
    assert not (tmp_path / "a").exists()


def test_file_absent_removes_a_file_with_its_diff(tmp_path: Path) -> None:
    target = tmp_path / "gone"
    target.write_text("old line\n")
    first = Task("file", {"path": str(target), "state": "absent"}, context(tmp_path)).converge()
    assert "-old line" in first.diff
    assert not target.exists()


def test_file_over_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModuleError, match="is a folder"):
        Task("file", {"path": str(tmp_path), "content": "x"}, context(tmp_path)).plan()


def test_file_in_a_missing_folder_fails_on_the_host_with_the_folder_named(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "f"
    change = Task("file", {"path": str(target), "content": "x"}, context(tmp_path)).plan()
    assert change is not None
    result = run_step(change.steps[0].argv, change.steps[0].stdin, check=False)
    assert result.rc != 0
    assert f"folder {tmp_path / 'missing'} does not exist" in result.stderr


def test_file_replaces_a_link_with_a_file_and_leaves_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("target\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    Task("file", {"path": str(link), "content": "new\n"}, context(tmp_path)).converge()
    assert not link.is_symlink() and link.read_text() == "new\n"
    assert real.read_text() == "target\n"


# --- the file fact on real files ---------------------------------------------------------------


def read_fact(path: Path, **options: bool):
    fact = file_fact("f", str(path), **options)
    result = local().run(["sh", "-c", fact.script], check=False)
    return fact.parse(result.stdout, result.rc)


def test_file_fact_reads_kind_mode_owner_content(tmp_path: Path) -> None:
    target = tmp_path / "with space 'and quote'"
    target.write_bytes(b"\x00\xffbinary\n")
    target.chmod(0o4755)
    state = read_fact(target, sha256=True)
    assert (state.kind, state.mode, state.owner, state.uid, state.size) == ("file", "4755", "root", 0, 9)
    assert state.content == b"\x00\xffbinary\n"
    assert state.text is None
    assert state.sha256 == hashlib.sha256(b"\x00\xffbinary\n").hexdigest()
    assert read_fact(tmp_path / "nothing").kind == "absent"
    assert read_fact(tmp_path).kind == "directory"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert read_fact(tmp_path / "dangling").kind == "link"
    os.mkfifo(tmp_path / "fifo")
    assert read_fact(tmp_path / "fifo").kind == "other"


def test_file_fact_caps_content_and_gives_the_sha256_instead(tmp_path: Path) -> None:
    from fluxops.runner.modules._files import CONTENT_CAP

    big = tmp_path / "big"
    data = b"0123456789abcdef" * (CONTENT_CAP // 16 + 1)
    big.write_bytes(data)
    state = read_fact(big, sha256=True)
    assert state.content is None and state.size == len(data)
    assert state.sha256 == hashlib.sha256(data).hexdigest()
    same = Task("file", {"path": str(big), "content": data.decode()}, context(tmp_path)).plan()
    assert same is None
    changed = Task("file", {"path": str(big), "content": "small\n"}, context(tmp_path)).plan()
    assert changed is not None and "not shown (larger than the fact's cap" in changed.diff


def tricky_files(folder: Path) -> list[str]:
    """Paths of every kind the file fact tells apart, with contents and names that test its encoding."""
    from fluxops.runner.modules._files import CONTENT_CAP

    files = {
        "text": b"hello\nworld\n",
        "empty": b"",
        "no newline": b"last line",
        "binary": bytes(range(256)) * 3 + b"\x00",
        "one line of base64": b"y" * 57,
        "two lines of base64": b"z" * 114,
        "at the cap": b"c" * CONTENT_CAP,
        "over the cap": b"b" * (CONTENT_CAP + 1),
        "name 'quoted' $HOME \\ ü": b"odd\n",
        "new\nline": b"nl\n",
    }
    files |= {f"{n} bytes": b"x" * n for n in range(1, 5)}
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    os.chown(folder / "text", 54321, 54322)  # ids with no name: UNKNOWN
    os.chmod(folder / "binary", 0o4751)
    os.chmod(folder / "empty", 0)
    (folder / "dir").mkdir()
    os.mkfifo(folder / "fifo")
    (folder / "link").symlink_to(folder / "text")
    (folder / "dangling").symlink_to(folder / "nowhere")
    return [*sorted(str(p) for p in folder.iterdir()), str(folder / "absent"), str(folder / "text" / "x")]


def read_together(paths: list[str], env: dict[str, str] | None = None) -> dict[str, batch.Answer]:
    """Every file fact of ``paths`` (each way to ask for content and sha256) through one batch."""
    snippets = [
        batch.Snippet(fact.key, fact.script, fact.isolated, fact.reader, fact.request)
        for path in paths
        for content in (True, False)
        for sha256 in (True, False)
        for fact in [file_fact(f"{path}|{content}|{sha256}", path, content=content, sha256=sha256)]
    ]
    marker = batch.new_marker()
    result = local().run(["sh", "-s"], stdin=batch.script(snippets, marker), env=env, timeout=60)
    return batch.parse(result.stdout, snippets, marker)


def tools(folder: Path, *names: str) -> dict[str, str]:
    """A PATH with only these programs of this machine."""
    folder.mkdir()
    for name in names:
        found = shutil.which(name)
        assert found, f"{name} is not installed"
        (folder / name).symlink_to(found)
    return {"PATH": str(folder)}


def test_the_file_facts_of_a_batch_read_by_one_perl_answer_as_each_fact_alone(tmp_path: Path) -> None:
    paths = tricky_files(tmp_path / "files")
    together = read_together(paths)
    alone = {}
    for key in together:
        path, content, sha256 = key.split("|")
        fact = file_fact(key, path, content=content == "True", sha256=sha256 == "True")
        result = local().run(["sh", "-c", fact.script], check=False)
        alone[key] = batch.Answer(result.stdout, result.rc)
    assert together == alone
    states = {key: parse_file_state(a.stdout, a.rc) for key, a in together.items()}
    assert states[f"{paths[0]}|True|True"].kind == "file"
    # perl alone (and sha256sum, for files over the cap) is enough: no stat, no base64, one process
    assert read_together(paths, tools(tmp_path / "perl-only", "sh", "perl", "sha256sum")) == together


def test_the_file_facts_of_a_batch_are_read_as_before_on_a_host_without_perl(tmp_path: Path) -> None:
    paths = tricky_files(tmp_path / "files")
    no_perl = tools(tmp_path / "no-perl", "sh", "stat", "base64", "sha256sum", "cut")
    assert read_together(paths, no_perl) == read_together(paths)


# --- template ----------------------------------------------------------------------------------


def test_template_converges_and_masks_secrets_in_its_diff(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "config.yaml.j2").write_text(
        "node-name: {{ inventory_hostname }}\ntoken: {{ token }}\n"
    )
    dest = tmp_path / "config.yaml"
    ctx = context(tmp_path, {"inventory_hostname": "n5", "token": Secret("s3cr3t-value")})
    task = Task("template", {"src": "config.yaml.j2", "dest": str(dest), "mode": "0600"}, ctx)
    first = task.converge()
    assert dest.read_text() == "node-name: n5\ntoken: s3cr3t-value\n"
    assert mode_of(dest) == 0o600
    assert "+node-name: n5" in first.diff
    assert "s3cr3t-value" not in first.diff and "token: ***" in first.diff
    assert isinstance(first.steps[0].stdin, Secret)
    assert all("s3cr3t-value" not in arg for arg in first.steps[0].argv)


def test_template_missing_source_is_an_argument_error(tmp_path: Path) -> None:
    from fluxops.runner.module import ArgumentError

    with pytest.raises(ArgumentError, match="no template"):
        Task("template", {"src": "nope.j2", "dest": str(tmp_path / "x")}, context(tmp_path)).facts()


# --- line --------------------------------------------------------------------------------------


def test_line_replaces_the_matching_line_in_four_steps(tmp_path: Path) -> None:
    target = tmp_path / "sshd_config"
    target.write_text("Port 22\n#PermitRootLogin yes\nUsePAM yes\n")
    args = {"path": str(target), "regexp": r"^#?PermitRootLogin", "line": "PermitRootLogin no"}
    first = Task("line", args, context(tmp_path)).converge()
    assert "-#PermitRootLogin yes\n+PermitRootLogin no\n" in first.diff
    assert target.read_text() == "Port 22\nPermitRootLogin no\nUsePAM yes\n"


def test_line_appends_creates_and_removes(tmp_path: Path) -> None:
    target = tmp_path / "modules"
    target.write_text("overlay")  # no final newline
    Task("line", {"path": str(target), "line": "br_netfilter"}, context(tmp_path)).converge()
    assert target.read_text() == "overlay\nbr_netfilter\n"
    Task("line", {"path": str(target), "line": "overlay", "state": "absent"}, context(tmp_path)).converge()
    assert target.read_text() == "br_netfilter\n"
    created = tmp_path / "new.conf"
    Task(
        "line", {"path": str(created), "line": "x=1", "create": True, "mode": "0600"}, context(tmp_path)
    ).converge()
    assert created.read_text() == "x=1\n" and mode_of(created) == 0o600
    with pytest.raises(ModuleError, match="create: true"):
        Task("line", {"path": str(tmp_path / "absent"), "line": "x"}, context(tmp_path)).plan()


# --- get_url -----------------------------------------------------------------------------------


def test_get_url_copies_a_local_artifact_in_four_steps(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    binary = bytes(range(256)) * 100
    (artifacts / "k3s").write_bytes(binary)
    digest = hashlib.sha256(binary).hexdigest()
    dest = tmp_path / "bin" / "k3s"
    dest.parent.mkdir()
    args = {"src": "artifacts/k3s", "dest": str(dest), "sha256": digest.upper(), "mode": "0755"}
    first = Task("get_url", args, context(tmp_path)).converge()
    assert "from artifacts/k3s" in first.summary
    assert dest.read_bytes() == binary and mode_of(dest) == 0o755
    assert leftovers(dest.parent) == []


def test_get_url_local_artifact_with_the_wrong_sha256_is_not_copied(tmp_path: Path) -> None:
    (tmp_path / "k3s").write_bytes(b"not the release")
    args = {"src": str(tmp_path / "k3s"), "dest": str(tmp_path / "out"), "sha256": "0" * 64}
    with pytest.raises(ModuleError, match="nothing was copied"):
        Task("get_url", args, context(tmp_path)).plan()
    assert not (tmp_path / "out").exists()


def test_a_sha256_mismatch_on_the_host_leaves_no_file(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    dest.write_text("old\n")
    step = put_step(str(dest), mode="0644", sha256="0" * 64, stdin=b"new\n")
    result = run_step(step.argv, step.stdin, check=False)
    assert result.rc == 1 and "not 0000" in result.stderr and "was not written" in result.stderr
    assert dest.read_text() == "old\n"
    assert leftovers(tmp_path) == []


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_get_url_downloads_on_the_host_and_checks_the_sha256(
    tmp_path: Path, http_server: tuple[str, Path]
) -> None:
    base, root = http_server
    (root / "flux.tar.gz").write_bytes(b"release bytes" * 1000)
    digest = hashlib.sha256(b"release bytes" * 1000).hexdigest()
    dest = tmp_path / "flux.tar.gz"
    args = {"url": f"{base}/flux.tar.gz", "dest": str(dest), "sha256": digest}
    first = Task("get_url", args, context(tmp_path)).converge()
    assert first.steps[0].argv[-1] == f"{base}/flux.tar.gz"
    assert dest.read_bytes() == b"release bytes" * 1000

    bad = Task("get_url", {**args, "dest": str(tmp_path / "bad"), "sha256": "1" * 64}, context(tmp_path))
    change = bad.plan()
    assert change is not None
    result = run_step(change.steps[0].argv, check=False)
    assert result.rc == 1 and "sha256" in result.stderr
    assert not (tmp_path / "bad").exists() and leftovers(tmp_path) == []

    missing = Task("get_url", {"url": f"{base}/nope", "dest": str(tmp_path / "nope")}, context(tmp_path))
    change = missing.plan()
    assert change is not None
    assert run_step(change.steps[0].argv, check=False).rc != 0
    assert not (tmp_path / "nope").exists() and leftovers(tmp_path) == []


# --- fetch -------------------------------------------------------------------------------------


def test_fetch_copies_back_with_replacements_and_mode_in_four_steps(tmp_path: Path) -> None:
    remote = tmp_path / "k3s.yaml"
    remote.write_text("clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n")
    local_copy = tmp_path / "home" / ".kube" / "lab.yaml"
    args = {
        "src": str(remote),
        "dest": str(local_copy),
        "replace": {"https://127.0.0.1:6443": "https://192.168.8.5:6443"},
    }
    first = Task("fetch", args, context(tmp_path)).converge()
    assert first.steps == () and first.fetch == ((str(remote), str(local_copy)),)
    assert local_copy.read_text() == "clusters:\n- cluster:\n    server: https://192.168.8.5:6443\n"
    assert mode_of(local_copy) == 0o600
    local_copy.chmod(0o644)
    again = Task("fetch", args, context(tmp_path)).plan()
    assert again is not None and "mode 0644 -> 0600" in again.summary


# --- wait_for ----------------------------------------------------------------------------------


def test_wait_for_a_listening_port_is_ok_and_a_closed_one_times_out(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert Task("wait_for", {"port": port}, context(tmp_path)).plan() is None
    change = Task("wait_for", {"port": port, "timeout": 2}, context(tmp_path)).plan()
    assert change is not None and len(change.steps) == 1
    started = time.monotonic()
    result = run_step(change.steps[0].argv, check=False)
    assert result.rc == 124
    assert f"timed out after 2 s waiting for port 127.0.0.1:{port}" in result.stderr
    assert time.monotonic() - started < 10


def test_wait_for_a_command_until_it_succeeds(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    task = Task("wait_for", {"command": f"test -e '{marker}'", "timeout": 20}, context(tmp_path))
    change = task.plan()
    assert change is not None
    timer = threading.Timer(1.0, marker.touch)
    timer.start()
    try:
        result = run_step(change.steps[0].argv, check=False)
    finally:
        timer.cancel()
    assert result.rc == 0 and marker.exists()
    assert task.plan() is None


# --- system modules: facts read here, nothing changed ------------------------------------------


def test_sysctl_facts_read_the_running_kernel(tmp_path: Path) -> None:
    ostype = Path("/proc/sys/kernel/ostype").read_text().strip()
    task = Task(
        "sysctl",
        {"name": "kernel.ostype", "value": ostype, "file": "99-fluxops-test.conf"},
        context(tmp_path),
    )
    facts = task.facts()
    assert facts["live"].value == ostype
    assert facts["live"].writable is False  # read-only for everyone, as a container's /proc/sys/fs is
    assert facts["file"].kind == "absent"
    change = task.module.plan(task.args, facts, task.ctx)
    # only the file is to be written: the kernel has the value, though it could not be written
    assert change is not None and [s.argv[0] for s in change.steps] == ["sh"]
    assert f"+kernel.ostype = {ostype}" in change.diff
    with pytest.raises(ModuleError, match="read-only"):
        Task("sysctl", {"name": "kernel.ostype", "value": "Plan9"}, context(tmp_path)).plan()


def test_sysctl_reads_several_values_and_unknown_keys(tmp_path: Path) -> None:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    live = Task("sysctl", {"name": "net.ipv4.ip_local_port_range", "value": "1 2"}, context(tmp_path)).facts()
    assert live["live"].value is not None and live["live"].value.split() == [low, high]
    unknown = Task("sysctl", {"name": "fluxops.no.such.key", "value": 1}, context(tmp_path))
    assert unknown.facts()["live"].value is None


def test_modprobe_facts_match_this_machine(tmp_path: Path) -> None:
    loaded = sorted(p.name for p in Path("/sys/module").iterdir())[0]
    facts = Task("modprobe", {"name": loaded}, context(tmp_path)).facts()
    assert facts["kernel"].present is True
    assert facts["kernel"].modprobe == (
        shutil.which("modprobe") or shutil.which("modprobe", path="/usr/sbin:/sbin") or ""
    )
    task = Task("modprobe", {"name": "fluxops_no_such_module"}, context(tmp_path))
    facts = task.facts()
    assert facts["kernel"].present is False
    if facts["kernel"].modprobe:
        change = task.module.plan(task.args, facts, task.ctx)
        assert change is not None and change.steps[-1].argv == (
            facts["kernel"].modprobe,
            "fluxops_no_such_module",
        )
    else:
        with pytest.raises(ModuleError, match="no modprobe command"):
            task.module.plan(task.args, facts, task.ctx)


def test_package_facts_from_the_real_dpkg(tmp_path: Path) -> None:
    task = Task("package", {"names": ["coreutils", "fluxops-no-such-package"]}, context(tmp_path))
    change = task.plan()
    assert change is not None
    assert change.steps[-1].argv[-1] == "fluxops-no-such-package"
    assert "coreutils" not in change.steps[-1].argv
    assert Task("package", {"names": "coreutils"}, context(tmp_path)).plan() is None
    assert (
        Task("package", {"names": "fluxops-no-such-package", "state": "absent"}, context(tmp_path)).plan()
        is None
    )


def test_service_without_systemd_gets_a_clear_message(tmp_path: Path) -> None:
    task = Task("service", {"name": "fluxops-no-such-unit", "state": "started"}, context(tmp_path))
    if Path("/run/systemd/system").is_dir():
        with pytest.raises(ModuleError, match="systemd has no unit fluxops-no-such-unit"):
            task.plan()
    else:
        with pytest.raises(ModuleError, match="systemd is not running on the host"):
            task.plan()
    # and with no systemctl at all (an empty PATH: the fact uses only shell builtins to find out)
    fact = task.module.facts(task.args, task.ctx)[0]
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = local().run(["/bin/sh", "-c", fact.script], env={"PATH": str(empty)}, check=False)
    facts = {"unit": fact.parse(result.stdout, result.rc)}
    with pytest.raises(ModuleError, match="the host has no systemctl"):
        task.module.plan(task.args, facts, task.ctx)


def test_a_step_writes_secret_stdin_without_it_in_argv(tmp_path: Path) -> None:
    dest = tmp_path / "token"
    step = put_step(str(dest), mode="0600")
    secret_step = Step(step.argv, stdin=Secret("K10-secret-token"))
    run_step(secret_step.argv, secret_step.stdin)
    assert dest.read_text() == "K10-secret-token" and mode_of(dest) == 0o600
    assert all("K10" not in arg for arg in secret_step.argv)
