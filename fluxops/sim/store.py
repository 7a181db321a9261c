"""A simulated node's state on disk: one JSON document, changed under a lock, replaced atomically.

Separate processes (the CLIs, SSH sessions, a rehearsal's controllers) share a node through its
state folder. Every change runs in :meth:`Store.transaction`: an exclusive ``flock`` on
``state.lock`` (waited for, never stolen), the document read, changed and written back with
:func:`fluxops.files.atomic_write` (0600: the document holds Secrets; a throw-away node skips the
fsync). A reader that takes no lock still sees a whole document, the old one or the new one, and a
process re-reads it only when it changed. The folder is 0700.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fluxops.errors import FluxopsError
from fluxops.files import atomic_write

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
FORMAT = 1
LOCK_TIMEOUT = 60.0


class SimError(FluxopsError):
    """The simulated node cannot do what was asked (no node, a broken state, a lock not released)."""


def object_key(group: str, kind: str, namespace: str, name: str) -> str:
    """The store's key of an object: its API group, kind, namespace (empty if cluster-scoped) and name."""
    return f"{group}|{kind}|{namespace}|{name}"


def group_of(api_version: str) -> str:
    """The API group of an apiVersion (empty for the core group)."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def version_of(api_version: str) -> str:
    """The version part of an apiVersion."""
    return api_version.rsplit("/", 1)[-1]


def key_of(obj: dict[str, Any]) -> str:
    """The store key of ``obj``."""
    md = obj.get("metadata") or {}
    return object_key(
        group_of(str(obj.get("apiVersion", ""))),
        str(obj.get("kind", "")),
        str(md.get("namespace") or ""),
        str(md.get("name", "")),
    )


class State:
    """The document: objects by key, the controllers' schedule, the node and its fault settings."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        data.setdefault("format", FORMAT)
        data.setdefault("rv", 0)
        data.setdefault("objects", {})
        data.setdefault("schedule", {})
        data.setdefault("node", {})
        data.setdefault("faults", {})

    @property
    def objects(self) -> dict[str, dict[str, Any]]:
        """Every stored object by key."""
        return self.data["objects"]

    @property
    def schedule(self) -> dict[str, dict[str, Any]]:
        """When each Flux object is due next, its lease and its pending health check, by key."""
        return self.data["schedule"]

    @property
    def node(self) -> dict[str, Any]:
        """The node: name, versions, clock, whether Flux is installed."""
        return self.data["node"]

    @property
    def faults(self) -> dict[str, Any]:
        """Injected faults (see :mod:`fluxops.sim.faults`)."""
        return self.data["faults"]

    def next_rv(self) -> str:
        """A new resourceVersion."""
        self.data["rv"] = int(self.data["rv"]) + 1
        return str(self.data["rv"])

    def get(self, group: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, or None."""
        return self.objects.get(object_key(group, kind, namespace, name))

    def list(self, group: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of a kind (in one namespace, or all), sorted by namespace and name."""
        prefix = f"{group}|{kind}|"
        found = [
            o
            for k, o in self.objects.items()
            if k.startswith(prefix) and (namespace is None or k.split("|")[2] == namespace)
        ]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def copy(self) -> State:
        """A deep copy (a snapshot that later changes do not reach); JSON data copies fastest through JSON."""
        return State(json.loads(json.dumps(self.data)))


class Store:
    """The state folder of one simulated node."""

    def __init__(self, folder: Path, *, durable: bool = True) -> None:
        self.folder = Path(folder)
        self.durable = durable  # fsync each write (a rehearsal's throw-away node need not)
        self._cache: tuple[tuple[int, int, int], State] | None = None

    @property
    def path(self) -> Path:
        """The state document."""
        return self.folder / STATE_FILE

    def exists(self) -> bool:
        """True when the folder holds a node."""
        return self.path.is_file()

    def create(self, node: dict[str, Any]) -> None:
        """A fresh node (the folder made 0700); SimError if one is there already."""
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        with self._locked():
            if self.exists():
                raise SimError(f"a simulated node already lives in {self.folder}")
            self._write(json.dumps(State({"node": node}).data, sort_keys=True))

    def read(self) -> State:
        """The document as it is now (no lock: it is always replaced whole). Read-only: the same object
        is returned until the document changes; change it in :meth:`transaction`."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise SimError(
                f"no simulated node in {self.folder}: start one with `k3s server` "
                "(or set FLUXOPS_SIM_STATE to its state folder)"
            ) from None
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        state = self._load()[1]
        self._cache = (key, state)
        return state

    def _load(self) -> tuple[str, State]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SimError(f"no simulated node in {self.folder}") from None
        try:
            return text, State(json.loads(text))
        except ValueError as exc:
            raise SimError(f"{self.path}: the simulated node's state does not parse ({exc})") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[State]:
        """The document, locked for the block; written back (atomically) if the block changed it."""
        with self._locked():
            text, state = self._load()
            yield state
            after = json.dumps(state.data, sort_keys=True)  # the form written, so equal text: unchanged
            if after != text:
                self._write(after)

    def _write(self, text: str) -> None:
        if self.durable:
            atomic_write(self.path, text, mode=0o600)
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{STATE_FILE}.", suffix=".tmp", dir=self.folder)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive flock on ``state.lock``, waited for up to LOCK_TIMEOUT seconds."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise SimError(
                            f"the simulated node in {self.folder} stayed locked for {LOCK_TIMEOUT:.0f} s"
                        ) from None
                    time.sleep(0.005)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
