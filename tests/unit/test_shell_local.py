"""The command adapter on this machine: argv only, stdin, timeouts, masking."""

from __future__ import annotations

import logging
import os

import pytest

from fluxops.errors import CommandError
from fluxops.masking import Secret, mask
from fluxops.shell import local, quote

HOSTILE = ["a b", "it's", '"dq"', "$(touch /tmp/pwned)", "`id`", "x;y|z&", "new\nline", "*", "", "tab\there"]


def test_argv_arrives_byte_exact_without_a_shell() -> None:
    result = local().run(["printf", "%s\\0", *HOSTILE])
    assert result.stdout.split("\0")[:-1] == HOSTILE


def test_quote_round_trips_through_sh() -> None:
    result = local().run(["sh", "-c", f"printf '%s\\0' {quote(HOSTILE)}"])
    assert result.stdout.split("\0")[:-1] == HOSTILE


def test_stdin_env_cwd_and_result(tmp_path) -> None:
    result = local().run(
        ["sh", "-c", 'cat; printf "%s" "$FOO"; pwd'], stdin="in\n", env={"FOO": "bar"}, cwd=tmp_path
    )
    assert result.stdout == f"in\nbar{tmp_path}\n"
    assert result.rc == 0 and result.ok and result.host == "local" and result.duration > 0


def test_failure_raises_with_rc_and_stderr_tail() -> None:
    with pytest.raises(CommandError) as caught:
        local().run(["sh", "-c", "echo boom >&2; exit 7"])
    assert caught.value.rc == 7 and "boom" in caught.value.stderr_tail and caught.value.host == "local"
    assert local().run(["false"], check=False).rc == 1


def test_timeout_and_missing_command_are_clear() -> None:
    with pytest.raises(CommandError, match=r"timed out after 0.2s"):
        local().run(["sleep", "5"], timeout=0.2)
    with pytest.raises(CommandError, match="command not found: no-such-binary-here"):
        local().run(["no-such-binary-here"])


def test_secret_is_refused_on_a_command_line() -> None:
    with pytest.raises(CommandError, match="may not be put on a command line") as caught:
        local().run(["echo", Secret("hunter2")])  # type: ignore[list-item]
    assert "hunter2" not in str(caught.value)


def test_secret_on_stdin_is_masked_in_result_error_and_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fluxops")
    secret = Secret("AGE-LIKE-SECRET-0123456789")
    result = local().run(["cat"], stdin=secret)
    assert result.stdout == "***"
    with pytest.raises(CommandError) as caught:
        local().run(["sh", "-c", "cat >&2; exit 3"], stdin=secret)
    assert "AGE-LIKE-SECRET" not in str(caught.value)
    assert "***" in caught.value.stderr_tail
    assert caplog.records and "AGE-LIKE-SECRET" not in caplog.text


def test_mask_hides_each_line_of_a_multiline_secret() -> None:
    secret = Secret("# comment line\nSECRET-BODY-LINE\n")
    assert "SECRET-BODY-LINE" not in mask("key was SECRET-BODY-LINE here", [secret])
    assert str(secret) == "***" and repr(secret) == "Secret(***)"


def test_commands_see_the_environment_as_it_is_now(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("FLUXOPS_TEST_LATE", "set-after-import")
    assert local().run(["printenv", "FLUXOPS_TEST_LATE"]).stdout == "set-after-import\n"
    tool = tmp_path / "late-tool"
    tool.write_text("#!/bin/sh\necho late tool\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert local().run(["late-tool"]).stdout == "late tool\n"
