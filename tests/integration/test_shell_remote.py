"""The command adapter over real SSH to sandbox hosts: quoting, secrets, host keys, reuse, time limits."""

from __future__ import annotations

import dataclasses
import logging
import shlex
import threading
import time
from pathlib import Path

import pytest

from fluxops import known_hosts
from fluxops.errors import CommandError, HostKeyError
from fluxops.inventory import Host
from fluxops.masking import Secret
from fluxops.ping import ping
from fluxops.shell import Connections, RemoteShell, local

pytestmark = pytest.mark.ssh

HOSTILE = [
    "a b",
    "it's",
    '"dq"',
    "$(touch /tmp/pwned)",
    "`id`",
    "x;y|z&&w",
    "new\nline",
    "*",
    "",
    "tab\there",
    "back\\slash",
    "ünïcødé",
    "-n",
]


@pytest.fixture
def first_host(sandbox_env) -> Host:
    return sandbox_env.inventory.hosts[0]


@pytest.fixture
def second_host(sandbox_env) -> Host:
    return sandbox_env.inventory.hosts[1]


@pytest.fixture
def n5(first_host: Host) -> RemoteShell:
    """A shell on the first sandbox host (n5 in the shipped inventory)."""
    shell = RemoteShell(first_host)
    yield shell
    shell.close()


def test_hostile_arguments_arrive_byte_exact(n5: RemoteShell) -> None:
    result = n5.run(["printf", "%s\\0", *HOSTILE])
    assert result.stdout.split("\0")[:-1] == HOSTILE
    assert n5.run(["test", "-e", "/tmp/pwned"], check=False).rc == 1


def test_hostile_path_and_variable_values_round_trip(n5: RemoteShell) -> None:
    directory = "/tmp/dir with 'quotes' and $(x)"
    name = 'file "name"; rm -rf x\nnext'
    content = "value with $HOME, `cmd`, 'q', \"dq\" and\nnewline\n"
    n5.run(["mkdir", "-p", directory])
    n5.run(["sh", "-c", 'cat > "$1"', "sh", f"{directory}/{name}"], stdin=content)
    assert n5.run(["cat", name], cwd=directory).stdout == content
    assert n5.run(["printenv", "VALUE"], env={"VALUE": content}).stdout == content + "\n"


def test_secret_on_stdin_never_in_process_list_logs_or_errors(
    sandbox_env, n5: RemoteShell, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fluxops")
    secret = Secret("SECRET-VALUE-FOR-THIS-TEST-ONLY-0123456789")
    needle = secret.reveal()
    done = threading.Event()

    def hold() -> None:
        # the secret is read on stdin while the command keeps running for a moment
        n5.run(["sh", "-c", "cat >/dev/null; sleep 1.5"], stdin=secret)
        done.set()

    worker = threading.Thread(target=hold)
    worker.start()
    watcher = RemoteShell(sandbox_env.inventory.hosts[0])
    seen = []
    try:
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline and not done.is_set():
            listing = watcher.run(
                ["sh", "-c", "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done"]
            ).stdout
            seen.append(listing)
    finally:
        worker.join()
        watcher.close()
    assert any("sleep 1.5" in listing for listing in seen), "the command was never seen running"
    assert not any(needle in listing for listing in seen)
    with pytest.raises(CommandError) as caught:
        n5.run(["sh", "-c", "cat >&2; exit 4"], stdin=secret)
    assert needle not in str(caught.value) and caught.value.rc == 4
    assert needle not in caplog.text and "sleep 1.5" in caplog.text


def test_secret_in_remote_env_is_refused(n5: RemoteShell) -> None:
    with pytest.raises(CommandError, match="stdin"):
        n5.run(["true"], env={"TOKEN": Secret("x" * 10)})


def _tampered(host: Host, tmp_path: Path) -> Path:
    """known_hosts where ``host``'s key is replaced by another valid key."""
    local().run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")])
    other = (tmp_path / "other.pub").read_text().split()
    name = known_hosts.host_name(host.address, host.port)
    lines = []
    for line in host.known_hosts.read_text().splitlines():
        lines.append(f"{name} {other[0]} {other[1]}" if line.split()[0] == name else line)
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_changed_host_key_is_refused_before_any_command(
    first_host: Host, n5: RemoteShell, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="paramiko")
    marker = f"/tmp/marker-{tmp_path.name}"
    host = dataclasses.replace(first_host, known_hosts=_tampered(first_host, tmp_path))
    shell = RemoteShell(host, accept_new_host_key=True)
    with pytest.raises(HostKeyError, match="does not match") as caught:
        shell.run(["touch", marker])
    name = known_hosts.host_name(host.address, host.port)
    assert f"`ssh-keygen -R {shlex.quote(name)} -f {host.known_hosts}`" in str(caught.value)
    assert n5.run(["test", "-e", marker], check=False).rc == 1
    time.sleep(0.3)  # paramiko's transport thread logged once its socket was closed under it
    assert "Socket exception" not in caplog.text


def test_unknown_host_needs_explicit_accept_then_is_recorded(second_host: Host, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    host = dataclasses.replace(second_host, known_hosts=known)
    with pytest.raises(HostKeyError, match="--accept-new-host-key"):
        RemoteShell(host).run(["true"])
    assert not known.exists()
    first = RemoteShell(host, accept_new_host_key=True)
    assert first.run(["hostname"]).stdout.strip() == host.name
    first.close()
    assert known.read_text().startswith(f"{known_hosts.host_name(host.address, host.port)} ssh-ed25519 ")
    strict = RemoteShell(host)
    assert strict.run(["hostname"]).stdout.strip() == host.name
    strict.close()


def test_one_connection_per_host_is_reused(first_host: Host) -> None:
    with Connections() as conns:
        shell = conns.get(first_host)
        assert conns.get(first_host) is shell
        shell.run(["true"])
        transport = shell.connection().transport
        for _ in range(5):
            shell.run(["true"])
        assert shell.connection().transport is transport
        sock = transport.sock
        import socket

        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_remote_failure_timeout_and_unreachable_host(first_host: Host, n5: RemoteShell) -> None:
    with pytest.raises(CommandError) as caught:
        n5.run(["sh", "-c", "echo nope >&2; exit 9"])
    assert (caught.value.host, caught.value.rc) == (first_host.name, 9) and "nope" in str(caught.value)
    with pytest.raises(CommandError, match="timed out"):
        n5.run(["sleep", "5"], timeout=0.5)
    assert n5.run(["sh", "-c", "exit 124"], timeout=5, check=False).rc == 124  # its own 124, in time
    closed = dataclasses.replace(first_host, port=1)
    with pytest.raises(CommandError) as caught:
        RemoteShell(closed, connect_timeout=2).run(["true"])
    text = str(caught.value)
    assert f"cannot connect to {first_host.name} ({first_host.user}@{first_host.address} port 1)" in text
    # the error ends with a command a user can paste (never user@address:port)
    assert text.endswith(
        f": ssh -p 1 -i {first_host.key_file} -o UserKnownHostsFile={first_host.known_hosts} "
        f"{first_host.user}@{first_host.address}"
    )


def _running(shell: RemoteShell, pattern: str) -> list[str]:
    """Command lines of the host's processes matching ``pattern`` (pgrep -f), seen over ``shell``."""
    return shell.run(["pgrep", "-a", "-f", pattern], check=False).stdout.splitlines()


def test_timed_out_command_is_stopped_on_the_host(n5: RemoteShell, first_host: Host) -> None:
    watcher = RemoteShell(first_host)
    try:
        for argv in (["sleep", "300"], ["sh", "-c", "sleep 300 & sleep 300; wait"]):
            started = time.monotonic()
            with pytest.raises(CommandError, match=r"timed out after 0.5s"):
                n5.run(argv, timeout=0.5)
            assert time.monotonic() - started < 2.0
            assert _running(watcher, "^sleep 300$") == [], argv
        assert n5.run(["echo", "still usable"], timeout=5).stdout == "still usable\n"
        secret = Secret("read-on-stdin-under-a-time-limit")
        assert n5.run(["cat"], stdin=secret, timeout=5).stdout == "***"
    finally:
        watcher.close()


def test_no_thread_outlives_a_timed_out_command(first_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    failures: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(repr(args.exc_value)))
    shell = RemoteShell(first_host)
    for _ in range(8):
        with pytest.raises(CommandError, match="timed out"):
            shell.run(["sleep", "5"], timeout=0.1)
        shell.close()  # at once: fabric's timer thread, still closing the channel, then hit EOFError
    time.sleep(0.3)
    assert failures == []


def test_a_host_with_a_bad_known_hosts_entry_fails_alone(
    first_host: Host, second_host: Host, tmp_path: Path
) -> None:
    name = known_hosts.host_name(first_host.address, first_host.port)
    broken = tmp_path / "known_hosts"
    broken.write_text(f"{name} ssh-ed25519 AAAA!!notbase64\n@cert-authority * ssh-ed25519 AAAA\n")
    bad = dataclasses.replace(first_host, known_hosts=broken)
    with Connections() as conns:
        replies = ping([bad, second_host], conns, timeout=10)
    assert [(r.host, r.ok) for r in replies] == [(bad.name, False), (second_host.name, True)]
    assert f"is not in {broken}" in replies[0].detail
    assert bad.port == 22 and f"ssh -i {bad.key_file} " in replies[0].detail  # port 22 goes unsaid
    assert replies[1].detail.startswith("Linux")


def test_revoked_host_key_is_refused_with_its_own_message(first_host: Host, tmp_path: Path) -> None:
    name = known_hosts.host_name(first_host.address, first_host.port)
    lines = first_host.known_hosts.read_text().splitlines()
    current = next(line for line in lines if line.split()[0] == name)
    known = tmp_path / "known_hosts"
    known.write_text(f"{current}\n@revoked * {' '.join(current.split()[1:])}\n")
    shell = RemoteShell(dataclasses.replace(first_host, known_hosts=known), accept_new_host_key=True)
    with pytest.raises(HostKeyError) as caught:
        shell.run(["true"])
    assert f"is marked @revoked in {known} (line 2)" in str(caught.value)
    assert "ssh-keygen -R" not in str(caught.value)  # removing the line would not make the key good


def test_stdin_arrives_whole_binary_and_in_one_piece(n5: RemoteShell) -> None:
    """A large binary stdin reaches the host byte-exact (invoke's own mirroring sent text, a byte a poll)."""
    import hashlib
    import os

    payload = os.urandom(4 << 20) + bytes(range(256))
    result = n5.run(["sha256sum"], stdin=payload, timeout=60)
    assert result.stdout.split()[0] == hashlib.sha256(payload).hexdigest()
    assert result.duration < 20  # ~2 KB/s before: 4 MiB would have taken about half an hour


def test_a_command_that_ignores_its_stdin_reports_its_own_exit(n5: RemoteShell) -> None:
    result = n5.run(["sh", "-c", "echo early >&2; exit 3"], stdin=b"x" * (1 << 20), check=False, timeout=60)
    assert result.rc == 3 and "early" in result.stderr
