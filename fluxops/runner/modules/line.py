"""``line``: one line present in (or absent from) a text file, as Ansible's lineinfile keeps it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import (
    ATTRIBUTE_PARAMS,
    CONTENT_CAP,
    FileState,
    attribute_steps,
    check_file_args,
    content_change,
    file_fact,
)
from fluxops.runner.modules._lines import ensure_line, remove_lines


@register
class Line(Module):
    """Ansible's lineinfile. ``present``: the last line ``regexp`` matches becomes ``line``; with no match
    ``line`` is appended unless it is there already. ``absent``: every line ``regexp`` matches (or equal to
    ``line``) goes. The whole file is rewritten atomically, with a unified diff."""

    name = "line"
    help = "a line present in a file (replacing the line a regexp matches) or absent from it"
    params = (
        Param("path", (str,), required=True, help="absolute path of the file on the host"),
        Param("line", (str,), help="the whole line, without its newline"),
        Param("regexp", (str,), help="a Python regular expression searched in each line"),
        Param("state", (str,), default="present", choices=("present", "absent")),
        Param("create", (bool,), default=False, help="create the file when it does not exist"),
        *ATTRIBUTE_PARAMS,
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """line for present, line or regexp for absent; one line; a regexp that compiles."""
        check_file_args(args, "path")
        if args["state"] == "present" and args["line"] is None:
            raise ArgumentError("state present needs line")
        if args["state"] == "absent" and args["line"] is None and args["regexp"] is None:
            raise ArgumentError("state absent needs line or regexp")
        if args["line"] is not None and ("\n" in args["line"] or "\r" in args["line"]):
            raise ArgumentError("line: one line only (no newline in it)")
        if args["regexp"] is not None:
            try:
                re.compile(args["regexp"])
            except re.error as exc:
                raise ArgumentError(
                    f"regexp: {args['regexp']!r} is not a valid regular expression: {exc}"
                ) from exc

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """The file's state and content."""
        return (file_fact("path", args["path"]),)

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """The file rewritten with the line edited, or None when it is as wanted."""
        path: str = args["path"]
        state: FileState = facts["path"]
        attrs = {"mode": args["mode"], "owner": args["owner"], "group": args["group"]}
        if state.kind in {"absent", "link"}:
            if args["state"] == "absent":
                return None
            if not args["create"]:
                raise ModuleError(f"{path} does not exist (create: true creates it)")
            return content_change(path, state, (args["line"] + "\n").encode(), **attrs)
        if state.kind != "file":
            raise ModuleError(f"{path} is not a file ({state.kind})")
        if state.content is None:
            raise ModuleError(f"{path} has {state.size} bytes, more than the {CONTENT_CAP} a line edit reads")
        text = state.content.decode(errors="surrogateescape")
        if args["state"] == "present":
            edited = ensure_line(text, args["line"], args["regexp"])
        else:
            edited = remove_lines(text, args["line"], args["regexp"])
        if edited == text:
            steps, notes = attribute_steps(path, state, **attrs)
            return Change(tuple(steps), f"{path}: {', '.join(notes)}") if steps else None
        return content_change(path, state, edited.encode(errors="surrogateescape"), **attrs)
