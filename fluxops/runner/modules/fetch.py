"""``fetch``: a file of the host copied to the controller, with text replacements and a private mode.

What the runner does with ``Change.fetch`` (the module runs nothing itself): for each ``(remote, local)``
pair, after the change's steps (none here) ran and never in check mode,

1. read the remote file's bytes over the host's connection;
2. ``content, mode = module.fetched(args, data)`` when the module has ``fetched`` (this one does: the
   ``replace`` substitutions applied and the ``mode`` asked), else ``(data, 0o600)``;
3. ``fluxops.files.atomic_write(Path(local), content, mode=mode)``: the local file is replaced
   atomically and has its mode from creation on (it may hold credentials: a kubeconfig does).

The plan already holds the absolute local path. No content diff is shown, for the same reason.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import (
    CONTENT_CAP,
    FileState,
    ModeParam,
    check_path,
    file_fact,
    normal_mode,
)


@register
class Fetch(Module):
    """A host's file copied to the controller (``dest``, 0600 unless ``mode`` says otherwise) with the
    ``replace`` substitutions applied, e.g. a kubeconfig's server from 127.0.0.1 to the node's address.
    Ok when the local file already has that content and mode."""

    name = "fetch"
    help = "a file of the host copied to the controller, with text substitutions"
    params = (
        Param("src", (str,), required=True, help="absolute path on the host"),
        Param(
            "dest",
            (str,),
            required=True,
            help="path on the controller (~ expanded; relative: to the playbook)",
        ),
        ModeParam("mode", default="0600", help="octal mode of the local file, quoted"),
        Param("replace", (dict,), default={}, help="text substitutions {old: new}, applied in order"),
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """An absolute src, an octal mode, string substitutions."""
        check_path("src", args["src"])
        args["mode"] = normal_mode(args["mode"])
        for old, new in args["replace"].items():
            if not isinstance(old, str) or not isinstance(new, str) or not old:
                raise ArgumentError(f"replace: {old!r}: {new!r} is not a substitution of one text by another")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """The remote file's state and content."""
        return (file_fact("src", args["src"]),)

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """A fetch of src to dest, or None when dest already has the substituted content and the mode."""
        src: str = args["src"]
        local = local_path(args, ctx)
        state: FileState = facts["src"]
        if state.kind != "file":
            if ctx.check and state.kind in {"absent", "link"}:
                return Change(
                    (), f"fetch {src} to {local} ({src} is not on the host yet)", fetch=((src, str(local)),)
                )
            raise ModuleError(f"fetch: {src} is not a file on the host ({state.kind})")
        if state.content is None:
            raise ModuleError(f"fetch: {src} has {state.size} bytes; fetch copies files up to {CONTENT_CAP}")
        content, mode = self.fetched(args, state.content)
        reason = _local_difference(local, content, mode)
        if reason is None:
            return None
        return Change((), f"fetch {src} to {local} ({reason})", fetch=((src, str(local)),))

    def fetched(self, args: Args, data: bytes) -> tuple[bytes, int]:
        """What the runner writes locally for the fetched bytes: the substituted content and its mode."""
        return substitute(data, args["replace"], args["src"]), int(args["mode"], 8)


def substitute(data: bytes, replace: Mapping[str, str], name: str) -> bytes:
    """``data`` with each ``old`` text replaced by its ``new`` text; the file must be UTF-8 for that."""
    if not replace:
        return data
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ModuleError(f"fetch: {name} is not UTF-8 text, so replace cannot apply to it") from None
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.encode()


def local_path(args: Args, ctx: Context) -> Path:
    """The absolute path of ``dest`` on the controller."""
    path = Path(args["dest"]).expanduser()
    return path if path.is_absolute() else ctx.base_dir / path


def _local_difference(path: Path, content: bytes, mode: int) -> str | None:
    """Why the local file is not as wanted ("missing", "content differs", "mode 0644 -> 0600"), or None."""
    try:
        current_mode = stat.S_IMODE(path.stat().st_mode)
        current = path.read_bytes()
    except FileNotFoundError:
        return "not on the controller yet"
    except IsADirectoryError:
        raise ModuleError(f"fetch: {path} is a folder on the controller") from None
    if current != content:
        return "content differs"
    if current_mode != mode:
        return f"mode {current_mode:04o} -> {mode:04o}"
    return None
