"""known_hosts read as OpenSSH reads it; ssh-keygen -F is the oracle for which lines name a host."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

import pytest

from fluxops import known_hosts
from fluxops.known_hosts import Verdict
from fluxops.shell import local

NAMES = [
    "127.0.0.2",
    "[127.0.0.2]:2222",
    "[127.0.0.2]:2223",
    "127.0.0.3",
    "[127.0.0.3]:2222",
    "127.0.0.5",
    "[127.0.0.6]:2200",
    "node1.example.com",
    "NODE2.example.com",
    "db.example.org",
]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real public keys made by ssh-keygen, as ``type base64``: two ed25519, one ecdsa."""
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name, kind in (("current", "ed25519"), ("old", "ed25519"), ("ecdsa", "ecdsa")):
        local().run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(folder / name)])
        made[name] = " ".join((folder / f"{name}.pub").read_text().split()[:2])
    return made


def blob(key: str) -> bytes:
    return base64.b64decode(key.split()[1])


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def keygen_found(path: Path, name: str) -> set[int]:
    """The lines ssh-keygen -F says name the host ``name``."""
    out = local().run(["ssh-keygen", "-F", name, "-f", str(path)], check=False).stdout
    return {int(n) for n in re.findall(r"^# Host .* found: line (\d+)", out, re.MULTILINE)}


def test_lines_naming_a_host_are_the_ones_ssh_keygen_finds(tmp_path: Path, keys: dict[str, str]) -> None:
    hashed = write(tmp_path / "hashed", f"127.0.0.5 {keys['old']}", f"[127.0.0.6]:2200 {keys['ecdsa']}")
    local().run(["ssh-keygen", "-q", "-H", "-f", str(hashed)])
    hashed_lines = hashed.read_text().splitlines()
    assert all(line.startswith("|1|") for line in hashed_lines)
    key = keys["current"]
    path = write(
        tmp_path / "known_hosts",
        "# a comment",
        "",
        f"127.0.0.2 {key}",
        f"[127.0.0.2]:2222 {key} with a comment",
        f"127.0.0.*,!127.0.0.3 {key}",
        f"[127.0.0.?]:2222 {key}",
        f"   \t127.0.0.3,node1.example.com {key}",
        f"*.EXAMPLE.com,!db.* {key}",
        f"node?.example.com {key}",
        f"[127.0.0.2]:* {key}",
        f"@revoked * {keys['old']}",
        f"@cert-authority *.example.com {keys['ecdsa']}",
        f"@revoked\t[127.0.0.3]:2222 {keys['ecdsa']}",
        *hashed_lines,
    )
    entries = known_hosts.read(path)
    assert len(entries) == 12  # OpenSSH reads no marker followed by a tab (line 13)
    for name in NAMES:
        ours = {e.line for e in entries if e.matches(name)}
        assert ours == keygen_found(path, name), name


def test_malformed_lines_are_skipped_with_a_warning_naming_file_and_line(
    tmp_path: Path, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fluxops.known_hosts")
    key_type, data = keys["current"].split()
    truncated = base64.b64encode(blob(keys["current"])[:-1]).decode()
    path = write(
        tmp_path / "known_hosts",
        f"[127.0.0.2]:2222 {key_type} AAAA!!notbase64",
        f"[127.0.0.2]:2222 {key_type} {data[:-1]}",
        f"[127.0.0.2]:2222 ssh-rsa {data}",
        f"[127.0.0.2]:2222 {key_type} {truncated}",
        "[127.0.0.2]:2222",
        f"[127.0.0.2]:2222 {key_type}",
        f"@marked [127.0.0.2]:2222 {key_type} {data}",
        f"|1|bm90IGEgc2FsdA==|c2hvcnQ= {key_type} {data}",
        f"[127.0.0.2]:2222 {keys['current']}",
    )
    entries = known_hosts.read(path)
    assert [e.line for e in entries] == [9]
    warned = {r.getMessage().split(": ", 1)[0] for r in caplog.records}
    assert warned == {f"{path}:{n}" for n in range(1, 9)}
    assert "not valid base64" in caplog.text and "unknown marker '@marked'" in caplog.text
    assert known_hosts.check(entries, "[127.0.0.2]:2222", blob(keys["current"])).verdict is Verdict.OK
    caplog.clear()
    known_hosts.read(path)
    assert not caplog.records, "a file's bad lines are reported once per process"


def test_any_line_of_the_host_accepts_and_a_differing_one_alone_refuses(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    name = "[127.0.0.2]:2222"
    current = blob(keys["current"])
    both = known_hosts.read(write(tmp_path / "both", f"{name} {keys['old']}", f"{name} {keys['current']}"))
    assert known_hosts.check(both, name, current) == known_hosts.Check(Verdict.OK, (both[1],))
    old_only = known_hosts.read(
        write(tmp_path / "old", f"{name} {keys['old']}", f"127.0.0.2 {keys['current']}")
    )
    assert known_hosts.check(old_only, name, current) == known_hosts.Check(Verdict.CHANGED, (old_only[0],))
    other_type = known_hosts.read(write(tmp_path / "type", f"{name} {keys['ecdsa']}"))
    assert known_hosts.check(other_type, name, current).verdict is Verdict.CHANGED
    assert known_hosts.check(other_type, "[127.0.0.3]:2222", current) == known_hosts.Check(Verdict.NEW)


def test_revoked_key_is_refused_whatever_other_lines_say(tmp_path: Path, keys: dict[str, str]) -> None:
    name = "[127.0.0.2]:2222"
    current = blob(keys["current"])
    entries = known_hosts.read(
        write(
            tmp_path / "known_hosts",
            f"{name} {keys['current']}",
            f"@revoked [127.0.0.*]:* {keys['current']}",
            f"@revoked * {keys['old']}",
        )
    )
    assert known_hosts.check(entries, name, current) == known_hosts.Check(Verdict.REVOKED, (entries[1],))
    assert known_hosts.check(entries, "[10.0.0.2]:2222", current) == known_hosts.Check(Verdict.NEW)
    others = known_hosts.read(
        write(tmp_path / "other", f"@revoked * {keys['old']}", f"{name} {keys['current']}")
    )
    assert known_hosts.check(others, name, current).verdict is Verdict.OK


def test_cert_authority_line_is_skipped_with_a_note(
    tmp_path: Path, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fluxops.known_hosts")
    name = "[127.0.0.2]:2222"
    path = write(tmp_path / "known_hosts", f"@cert-authority * {keys['current']}", f"{name} {keys['old']}")
    entries = known_hosts.read(path)
    assert not caplog.records
    assert known_hosts.check(entries, name, blob(keys["current"])).verdict is Verdict.CHANGED
    assert f"{path}:1: note: @cert-authority line skipped for {name}" in caplog.text
    assert "not supported yet" in caplog.text
    assert known_hosts.known_types(entries, name) == ["ssh-ed25519"]


def test_known_types_in_file_order_without_revoked_lines(tmp_path: Path, keys: dict[str, str]) -> None:
    name = "127.0.0.2"
    entries = known_hosts.read(
        write(
            tmp_path / "known_hosts",
            f"@revoked {name} {keys['old']}",
            f"{name} {keys['ecdsa']}",
            f"other {keys['old']}",
            f"{name} {keys['current']}",
        )
    )
    assert known_hosts.known_types(entries, name) == ["ecdsa-sha2-nistp256", "ssh-ed25519"]
    assert known_hosts.host_name("127.0.0.2", 22) == "127.0.0.2"
    assert known_hosts.host_name("127.0.0.2", 2222) == "[127.0.0.2]:2222"


def test_recorded_key_ends_the_last_line_first_and_ssh_keygen_finds_it(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"127.0.0.9 {keys['old']}")  # no newline at the end
    known_hosts.append(path, "[127.0.0.2]:2222", "ssh-ed25519", blob(keys["current"]))
    assert path.read_text() == f"127.0.0.9 {keys['old']}\n[127.0.0.2]:2222 {keys['current']}\n"
    assert keygen_found(path, "[127.0.0.2]:2222") == {2}
    fresh = tmp_path / "new" / "known_hosts"
    known_hosts.append(fresh, "127.0.0.2", "ssh-ed25519", blob(keys["current"]))
    assert fresh.read_text() == f"127.0.0.2 {keys['current']}\n"
    assert known_hosts.read(tmp_path / "missing") == []


def test_a_line_without_the_port_accepts_only_when_no_line_names_the_port(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    current = blob(keys["current"])
    bare = known_hosts.read(write(tmp_path / "bare", f"127.0.0.2 {keys['current']}"))
    assert known_hosts.judge(bare, "127.0.0.2", 2222, current) == known_hosts.Check(Verdict.OK, (bare[0],))
    assert known_hosts.check(bare, "[127.0.0.2]:2222", current).verdict is Verdict.NEW
    other = known_hosts.read(write(tmp_path / "other", f"127.0.0.2 {keys['old']}"))
    assert known_hosts.judge(other, "127.0.0.2", 2222, current).verdict is Verdict.NEW
    both = known_hosts.read(
        write(tmp_path / "both", f"[127.0.0.2]:2222 {keys['old']}", f"127.0.0.2 {keys['current']}")
    )
    assert known_hosts.judge(both, "127.0.0.2", 2222, current).verdict is Verdict.CHANGED
