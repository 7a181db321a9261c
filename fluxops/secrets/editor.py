"""Editing a secret through sops: the editor sops runs, and the private folder and signals around it.

Parent side (:class:`Session`, used by :meth:`fluxops.secrets.sops.Sops.edit`): a 0700 folder that
fluxops makes holds sops' TMPDIR (where sops writes the decrypted temp file) and GNUPGHOME. It is
removed when the edit returns, and on SIGINT and SIGTERM after sops and the editor are stopped; the
handlers are installed only while the edit runs. A folder left by a run killed outright (SIGKILL) is
removed by the next edit.

Child side (``python -m fluxops.secrets.editor [EDITOR [ARGS...]] FILE``, given to sops as
SOPS_EDITOR; sops appends FILE): runs the operator's editor on FILE. When stdin is not a terminal it
checks the result, because sops would otherwise say "Press a key to return to the editor" and start
the editor again for ever: an edited file that is not valid YAML (JSON for ``*.json``) ends the
wrapper with exit 3, and so does a second call (sops rejected the file), so sops gives up. The
verdict is left in ``$FLUXOPS_EDIT_STATE`` for fluxops to report.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

PREFIX = "fluxops-edit-"
STATE_VARIABLE = "FLUXOPS_EDIT_STATE"
REJECTED = 3
STOP_GRACE = 5.0  # seconds sops and the editor get to exit after SIGTERM before SIGKILL
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_DEFAULT_EDITORS = ("vim", "nano", "vi")  # what sops itself falls back to


# -- parent side ------------------------------------------------------------------------------


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while an edit ran (raised out of the wait for sops)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def user_editor() -> list[str]:
    """The operator's editor as argv: ``$SOPS_EDITOR``, ``$EDITOR`` or ``$VISUAL``; empty if none."""
    for name in ("SOPS_EDITOR", "EDITOR", "VISUAL"):
        value = os.environ.get(name, "").strip()
        if value:
            return shlex.split(value)
    return []


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, from /proc (empty where there is none)."""
    table: dict[int, tuple[int, str]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren, ...)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child not in found:
            found.append(child)
            todo.extend(children.get(child, []))
    return found


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_folder(prefix: str = PREFIX) -> Path:
    """A new 0700 folder in the temp folder, named ``<prefix><pid>-...`` for :func:`remove_leftovers`."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def remove_leftovers(prefix: str = PREFIX, base: Path | None = None) -> list[Path]:
    """Remove ``private_folder`` folders whose process is gone (killed with SIGKILL); returns them."""
    base = Path(base or tempfile.gettempdir())
    removed = []
    for folder in base.glob(f"{prefix}*"):
        pid = folder.name[len(prefix) :].partition("-")[0]
        try:
            info = folder.lstat()
        except OSError:
            continue
        mine = info.st_uid == os.getuid() and folder.is_dir() and not folder.is_symlink()
        if mine and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


class Session:
    """One edit's private folder and signal handling; a context manager around running sops."""

    def __init__(self) -> None:
        self.folder = Path()
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}
        self._raising = True
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def tmpdir(self) -> Path:
        """sops' TMPDIR: the decrypted temp file lives here, and nowhere else."""
        return self.folder / "tmp"

    @property
    def state(self) -> Path:
        """Where the wrapped editor leaves its verdict."""
        return self.folder / "editor.state"

    def environment(self) -> dict[str, str]:
        """TMPDIR, SOPS_EDITOR (the wrapped editor) and what the wrapper needs, for sops' environment."""
        wrapper = [sys.executable, "-m", "fluxops.secrets.editor", *user_editor()]
        return {
            "TMPDIR": str(self.tmpdir),
            "SOPS_EDITOR": shlex.join(wrapper),
            STATE_VARIABLE: str(self.state),
            "PYTHONPATH": str(_PACKAGE_ROOT),
        }

    def __enter__(self) -> Session:
        remove_leftovers()
        self._install()
        try:
            self.folder = private_folder()
            self.tmpdir.mkdir(mode=0o700)
        except BaseException as exc:
            self._finish(exc)
            raise
        return self

    def run(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> int:
        """Run sops on the terminal and wait for it; SIGINT/SIGTERM interrupt the wait (see __exit__)."""
        self._proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd)
        return self._proc.wait()

    def verdict(self) -> tuple[str, str, str]:
        """What the wrapped editor found: (``ran``/``invalid``/``rejected``/``""``, format, problem)."""
        try:
            text = self.state.read_text()
        except OSError:
            return "", "", ""
        status, _, rest = text.partition("\n")
        kind, _, problem = rest.partition("\n")
        return status, kind, problem.strip()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self._finish(exc)

    def _finish(self, exc: BaseException | None) -> bool:
        self._raising = False
        try:
            self._stop()
            if self.folder != Path():
                shutil.rmtree(self.folder, ignore_errors=True)
        finally:
            self._restore()
        if self.received:
            # what the signal would have done without us: the default action, or the earlier handler
            signal.raise_signal(self.received[0])
            if isinstance(exc, Interrupted):
                raise KeyboardInterrupt from None
        return False

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if previous in (signal.SIG_IGN, None):
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._handle)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._raising and len(self.received) == 1:
            raise Interrupted(signum)

    def _stop(self) -> None:
        """Stop sops and everything below it (the editor), SIGTERM first, SIGKILL after STOP_GRACE."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        family = [*descendants(proc.pid), proc.pid]
        for pid in family:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE)
        while time.monotonic() < deadline and not all(_gone(p) for p in family if p != proc.pid):
            time.sleep(0.02)
        for pid in family:
            if (proc.poll() is None) if pid == proc.pid else not _gone(pid):
                _signal(pid, signal.SIGKILL)
        proc.wait()


# -- child side (the editor sops runs) -------------------------------------------------------


def problem_of(path: Path) -> tuple[str, str]:
    """(format, problem) when the edited file does not parse; ("", "") when it does or is not checked."""
    name = path.name.lower()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return "text", str(exc)
    if name.endswith(".json"):
        try:
            json.loads(text)
        except ValueError as exc:
            return "JSON", str(exc)
        return "", ""
    if name.endswith((".yaml", ".yml")):
        from ruamel.yaml import YAML

        try:
            list(YAML(typ="safe", pure=True).load_all(text))
        except Exception as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            return "YAML", "; ".join(lines[-3:]) or type(exc).__name__
    return "", ""


def _record(state: Path | None, status: str, kind: str = "", problem: str = "") -> None:
    if state is not None:
        state.write_text(f"{status}\n{kind}\n{problem}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the editor on the file sops gives, then check the result when there is no terminal."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m fluxops.secrets.editor [EDITOR [ARGS...]] FILE", file=sys.stderr)
        return 2
    *editor, path = args
    state_name = os.environ.pop(STATE_VARIABLE, "")
    state = Path(state_name) if state_name else None
    os.environ.pop("PYTHONPATH", None)  # set for this wrapper only, not for the editor
    checking = sys.stdin is None or not sys.stdin.isatty()
    if checking and state is not None and state.exists():
        _record(state, "rejected")
        print("fluxops: sops did not accept the edited file; no terminal to ask, giving up", file=sys.stderr)
        return REJECTED
    if not editor:
        found = next((p for p in map(shutil.which, _DEFAULT_EDITORS) if p), None)
        if found is None:
            print("fluxops: no editor: set $EDITOR (or $SOPS_EDITOR)", file=sys.stderr)
            return 2
        editor = [found]
    try:
        rc = subprocess.call([*editor, path])
    except OSError as exc:
        print(f"fluxops: cannot run the editor {editor[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    if rc != 0 or not checking:
        return rc
    kind, problem = problem_of(Path(path))
    if kind:
        _record(state, "invalid", kind, problem)
        print(f"fluxops: the edited file is not valid {kind}: {problem}", file=sys.stderr)
        return REJECTED
    _record(state, "ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
