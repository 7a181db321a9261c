"""Writing files without losing them: atomic replacement and an exclusive lock that names its holder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fluxops.errors import LockedError


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder: mode set at creation, fsync, rename.

    A crash at any moment leaves either the old or the new content at ``path``, never a part of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def file_mode(path: Path, default: int = 0o644) -> int:
    """The permission bits of ``path``, or ``default`` when it does not exist (to keep them on rewrite)."""
    try:
        return Path(path).stat().st_mode & 0o777
    except FileNotFoundError:
        return default


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    what = info.get("what") or "a fluxops task"
    return f"{what} (pid {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('since', '?')})"


@contextlib.contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600) for the block; LockedError naming the holder.

    The lock is the kernel's (flock): it is released when the process ends, crash or not, so a lock
    file left behind never blocks the next run.
    """
    import datetime as dt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise LockedError(
                f"{what} cannot start: {_holder(path)} holds {path}; wait for it to finish",
                lock_file=str(path),
            ) from None
        stamp = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        record = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "since": stamp}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
