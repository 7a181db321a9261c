"""secrets.edit cleans up: no plaintext left after a signal, no endless loop without a terminal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.sops_testing import REPO, secret_yaml, write_encrypted

FILE = "k8s/clusters/lab/infrastructure-config/e.sops.yaml"
WAIT = 60.0


def find_text(needle: str, roots: list[Path]) -> list[Path]:
    """Every regular file under ``roots`` (symlinks not followed, big files skipped) holding ``needle``."""
    found = []
    data = needle.encode()
    for root in roots:
        for folder, dirs, files in os.walk(root, onerror=lambda _: None):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
            for name in files:
                path = Path(folder, name)
                try:
                    if not path.is_file() or path.is_symlink() or path.stat().st_size > 4 << 20:
                        continue
                    if data in path.read_bytes():
                        found.append(path)
                except OSError:
                    continue
    return found


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


class Edit:
    """``invoke secrets.edit FILE`` as its own process group, without a terminal on stdin."""

    def __init__(self, repo: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", "secrets.edit", FILE],
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            # SIGINT as a terminal's Ctrl-C finds it, even when this run was started in the background
            # (a shell without job control starts background jobs with SIGINT ignored, and an ignored
            # signal stays ignored across exec)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def finish(self, timeout: float = WAIT) -> tuple[str, str]:
        return self.proc.communicate(timeout=timeout)

    def kill_all(self) -> None:
        """Whatever the edit left running (sops, the editor), by its process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.returncode is None:
            self.proc.communicate(timeout=WAIT)


@pytest.fixture
def edits() -> Iterator[list[Edit]]:
    started: list[Edit] = []
    yield started
    for edit in started:
        edit.kill_all()


def _wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_edit_leaves_no_plaintext_and_no_editor(
    repo: Path, tmp_path: Path, edits: list[Edit], signum: int
) -> None:
    value = f"plaintext-{uuid.uuid4().hex}"
    path = write_encrypted(repo, FILE, secret_yaml("e", token=value))
    before = path.read_bytes()
    temp = tmp_path / "tmp"
    temp.mkdir()
    started = tmp_path / "editor.pid"
    slow = script(
        tmp_path / "slow-editor",
        f'echo $$ > "{started}.part" && mv "{started}.part" "{started}"\nexec sleep 120\n',
    )
    edit = Edit(repo, {"EDITOR": str(slow), "TMPDIR": str(temp)})
    edits.append(edit)
    assert _wait_for(started, WAIT), edit.proc.poll()
    editor_pid = int(started.read_text())
    assert find_text(value, [temp]), "the decrypted temp file should be under TMPDIR while the editor runs"

    os.kill(edit.proc.pid, signum)  # the invoke process alone, not its group
    out, err = edit.finish()
    assert edit.proc.returncode != 0
    assert _gone(editor_pid, 10), "the editor was left running"
    assert find_text(value, [temp, Path("/tmp")]) == []
    assert list(temp.iterdir()) == []
    assert path.read_bytes() == before
    assert value not in out + err


def test_invalid_yaml_without_a_terminal_ends_with_an_error_and_changes_nothing(
    repo: Path, tmp_path: Path, edits: list[Edit]
) -> None:
    path = write_encrypted(repo, FILE, secret_yaml("e", token="REPLACE_ME"))
    before = path.read_bytes()
    temp = tmp_path / "tmp"
    temp.mkdir()
    # an edit folder of a run that was killed outright (its process is gone): the next edit removes it
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = temp / f"fluxops-edit-{dead.pid}-abc123"
    (leftover / "tmp").mkdir(parents=True)
    (leftover / "tmp" / "e.sops.yaml").write_text("token: left-behind\n")
    breaking = script(tmp_path / "breaking-editor", "printf 'stringData: [unclosed\\n' > \"$1\"\n")

    started = time.monotonic()
    edit = Edit(repo, {"EDITOR": str(breaking), "TMPDIR": str(temp)})
    edits.append(edit)
    _, err = edit.finish()
    assert time.monotonic() - started < WAIT
    assert edit.proc.returncode == 1, err
    assert "the edited file is not valid YAML; nothing was changed" in err
    assert FILE in err and "Traceback" not in err
    assert path.read_bytes() == before
    assert list(temp.iterdir()) == []


def test_edit_says_whether_it_saved(repo: Path, tmp_path: Path, edits: list[Edit]) -> None:
    path = write_encrypted(repo, FILE, secret_yaml("e", token="REPLACE_ME"))
    temp = tmp_path / "tmp"
    temp.mkdir()
    changing = script(tmp_path / "changing-editor", "sed -i 's/REPLACE_ME/real-value/' \"$1\"\n")
    edit = Edit(repo, {"EDITOR": str(changing), "TMPDIR": str(temp)})
    edits.append(edit)
    out, err = edit.finish()
    assert edit.proc.returncode == 0, err
    assert f"saved {FILE} (re-encrypted)" in out
    assert "real-value" not in path.read_text()

    same = path.read_bytes()
    untouched = script(tmp_path / "looking-editor", "true\n")
    edit = Edit(repo, {"EDITOR": str(untouched), "TMPDIR": str(temp)})
    edits.append(edit)
    out, err = edit.finish()
    assert edit.proc.returncode == 0, err
    assert f"{FILE} unchanged" in out
    assert path.read_bytes() == same
    assert list(temp.iterdir()) == []
