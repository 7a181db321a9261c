"""``file``: a file (with or without given content), a folder, or nothing at a path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param, Step
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import (
    ATTRIBUTE_PARAMS,
    DEFAULT_DIR_MODE,
    FileState,
    attribute_steps,
    check_file_args,
    content_change,
    content_diff,
    file_fact,
)


@register
class File(Module):
    """Ansible's copy (with ``content``) and file: a file's content and attributes, a folder, or absence.

    ``state: file`` without ``content`` creates an empty file when there is none and keeps the content
    of one that exists; ``state: absent`` removes a file, a link or a whole folder.
    """

    name = "file"
    help = "a file with content, mode, owner and group; a folder; or nothing at a path"
    params = (
        Param("path", (str,), required=True, help="absolute path on the host"),
        Param("state", (str,), default="file", choices=("file", "directory", "absent")),
        Param("content", (str,), help="the file's whole content (a unified diff shows what changes)"),
        *ATTRIBUTE_PARAMS,
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """An absolute path, an octal mode; content only for state file."""
        check_file_args(args, "path")
        if args["content"] is not None and args["state"] != "file":
            raise ArgumentError(f"content goes with state file, not state {args['state']}")
        if args["state"] == "absent" and any(args[k] is not None for k in ("mode", "owner", "group")):
            raise ArgumentError("mode, owner and group make no sense with state absent")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """The path's kind, attributes and (when content is managed or removed) its content."""
        wants_content = args["content"] is not None or args["state"] == "absent"
        return (file_fact("path", args["path"], content=wants_content, sha256=args["content"] is not None),)

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """Write, create, chmod/chown or remove, as the path's current state requires."""
        path: str = args["path"]
        state: FileState = facts["path"]
        if args["state"] == "absent":
            return _remove(path, state)
        if args["state"] == "directory":
            return _directory(path, state, args)
        if args["content"] is not None:
            wanted = args["content"].encode()
            return content_change(
                path, state, wanted, mode=args["mode"], owner=args["owner"], group=args["group"]
            )
        if state.kind == "file":
            steps, notes = attribute_steps(path, state, args["mode"], args["owner"], args["group"])
            return Change(tuple(steps), f"{path}: {', '.join(notes)}") if steps else None
        return content_change(path, state, b"", mode=args["mode"], owner=args["owner"], group=args["group"])


def _remove(path: str, state: FileState) -> Change | None:
    if state.kind == "absent":
        return None
    if state.kind == "directory":
        return Change((Step(("rm", "-rf", path)),), f"remove folder {path} and everything in it")
    diff = content_diff(path, state, None) if state.kind == "file" else ""
    return Change((Step(("rm", "-f", path)),), f"remove {path}", diff=diff)


def _directory(path: str, state: FileState, args: Args) -> Change | None:
    if state.kind == "directory":
        steps, notes = attribute_steps(path, state, args["mode"], args["owner"], args["group"])
        return Change(tuple(steps), f"{path}: {', '.join(notes)}") if steps else None
    if state.kind != "absent":
        raise ModuleError(
            f"{path} exists and is not a folder ({state.kind}); remove it first (state: absent)"
        )
    mode = args["mode"] or DEFAULT_DIR_MODE
    argv = ["install", "-d", "-m", mode]
    if args["owner"]:
        argv += ["-o", args["owner"]]
    if args["group"]:
        argv += ["-g", args["group"]]
    return Change((Step((*argv, path)),), f"create folder {path} ({mode})")
