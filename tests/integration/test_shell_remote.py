"""The command adapter over real SSH to sandbox hosts: quoting, secrets, host keys, reuse."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

import pytest

from fluxops.errors import CommandError, HostKeyError
from fluxops.masking import Secret
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
def n5(sandbox_env) -> RemoteShell:
    shell = RemoteShell(sandbox_env.inventory.host("n5"))
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
    watcher = RemoteShell(sandbox_env.inventory.host("n5"))
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


def _tampered(sandbox_env, tmp_path: Path) -> Path:
    """known_hosts where n5's key is replaced by another valid key."""
    local().run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")])
    other = (tmp_path / "other.pub").read_text().split()
    lines = []
    for line in sandbox_env.inventory.host("n5").known_hosts.read_text().splitlines():
        name = line.split()[0]
        lines.append(f"{name} {other[0]} {other[1]}" if name.startswith("[127.0.0.2]") else line)
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_changed_host_key_is_refused_before_any_command(sandbox_env, n5: RemoteShell, tmp_path: Path) -> None:
    marker = f"/tmp/marker-{tmp_path.name}"
    host = dataclasses.replace(sandbox_env.inventory.host("n5"), known_hosts=_tampered(sandbox_env, tmp_path))
    shell = RemoteShell(host, accept_new_host_key=True)
    with pytest.raises(HostKeyError, match="does not match") as caught:
        shell.run(["touch", marker])
    assert "ssh-keygen -R" in str(caught.value)
    assert n5.run(["test", "-e", marker], check=False).rc == 1


def test_unknown_host_needs_explicit_accept_then_is_recorded(sandbox_env, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    host = dataclasses.replace(sandbox_env.inventory.host("phx1"), known_hosts=known)
    with pytest.raises(HostKeyError, match="--accept-new-host-key"):
        RemoteShell(host).run(["true"])
    assert not known.exists()
    first = RemoteShell(host, accept_new_host_key=True)
    assert first.run(["hostname"]).stdout.strip() == "phx1"
    first.close()
    assert known.read_text().startswith("[127.0.0.3]:")
    strict = RemoteShell(host)
    assert strict.run(["hostname"]).stdout.strip() == "phx1"
    strict.close()


def test_one_connection_per_host_is_reused(sandbox_env) -> None:
    with Connections() as conns:
        host = sandbox_env.inventory.host("n5")
        shell = conns.get(host)
        assert conns.get(host) is shell
        shell.run(["true"])
        transport = shell.connection().transport
        for _ in range(5):
            shell.run(["true"])
        assert shell.connection().transport is transport
        sock = transport.sock
        import socket

        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_remote_failure_timeout_and_unreachable_host(sandbox_env, n5: RemoteShell) -> None:
    with pytest.raises(CommandError) as caught:
        n5.run(["sh", "-c", "echo nope >&2; exit 9"])
    assert (caught.value.host, caught.value.rc) == ("n5", 9) and "nope" in str(caught.value)
    with pytest.raises(CommandError, match="timed out"):
        n5.run(["sleep", "5"], timeout=0.5)
    closed = dataclasses.replace(sandbox_env.inventory.host("n5"), port=1)
    with pytest.raises(CommandError, match=r"cannot connect to n5 \(root@127.0.0.2:1\)"):
        RemoteShell(closed, connect_timeout=2).run(["true"])
