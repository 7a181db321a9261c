"""``get_url``: a file downloaded on the host, or copied from the controller, checked by sha256."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import (
    ATTRIBUTE_PARAMS,
    DEFAULT_FILE_MODE,
    FileState,
    attribute_steps,
    check_file_args,
    file_fact,
    owner_spec,
    put_step,
)

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Downloaders:
    """Which download tools the host has."""

    curl: bool
    wget: bool


def downloaders_fact() -> Fact:
    """A fact saying whether curl and wget exist on the host."""
    script = "\n".join(
        f"if command -v {tool} >/dev/null 2>&1; then echo {tool}; fi" for tool in ("curl", "wget")
    )
    return Fact("downloaders", script, parse_downloaders)


def parse_downloaders(stdout: str, rc: int) -> Downloaders:
    """The :class:`Downloaders` a :func:`downloaders_fact` snippet printed."""
    found = stdout.split()
    return Downloaders(curl="curl" in found, wget="wget" in found)


def download_argv(url: str, tools: Downloaders, timeout: int) -> tuple[str, ...]:
    """The host's command that prints the body at ``url`` (failing on an HTTP error), curl first."""
    if tools.curl:
        return ("curl", "-fsSL", "--proto", "=https,http", "--max-time", str(timeout), url)
    if tools.wget:
        return ("wget", "-q", "-T", str(timeout), "-O", "-", url)
    raise ModuleError(f"get_url: the host has neither curl nor wget to download {url}")


@register
class GetUrl(Module):
    """Ansible's get_url and copy for binaries: ``url`` is downloaded on the host (curl or wget), ``src``
    (a file on the controller, e.g. in an artifact folder for air-gapped hosts) is read here and sent on
    stdin. Either way the new file is written next to ``dest``, its sha256 checked on the host, and only
    then renamed into place; a mismatch leaves no file. Ok when ``dest`` has the wanted sha256 (``sha256``,
    or the ``src`` file's), or, for a ``url`` without ``sha256``, when it exists."""

    name = "get_url"
    help = "a file downloaded on the host or copied from the controller, with its sha256 checked"
    params = (
        Param("url", (str,), help="http(s) URL the host downloads"),
        Param("src", (str,), help="file on the controller (relative: to the playbook's folder)"),
        Param("dest", (str,), required=True, help="absolute path on the host"),
        Param("sha256", (str,), help="the file's sha256 (hex)"),
        Param("timeout", (int,), default=300, help="seconds a download may take"),
        *ATTRIBUTE_PARAMS,
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """One of url and src; an http(s) URL; a sha256 of 64 hex digits; an absolute dest."""
        if (args["url"] is None) == (args["src"] is None):
            raise ArgumentError("module get_url needs exactly one of url and src")
        check_file_args(args, "dest")
        if args["url"] is not None:
            parts = urlsplit(args["url"])
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                raise ArgumentError(f"url: {args['url']!r} is not an http or https URL")
        if args["sha256"] is not None:
            args["sha256"] = args["sha256"].lower().removeprefix("sha256:")
            if not _SHA256.fullmatch(args["sha256"]):
                raise ArgumentError(f"sha256: {args['sha256']!r} is not 64 hexadecimal digits")
        if args["timeout"] <= 0:
            raise ArgumentError("timeout: must be at least 1 second")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """dest's state and sha256; for a url, the host's download tools. ArgumentError for a missing src."""
        found = [file_fact("dest", args["dest"], content=False, sha256=True)]
        if args["url"] is not None:
            found.append(downloaders_fact())
        else:
            local_source(args, ctx)
        return found

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """The download or copy, or chmod/chown only, or None when dest is as wanted."""
        dest: str = args["dest"]
        state: FileState = facts["dest"]
        if state.kind in {"directory", "other"}:
            raise ModuleError(f"get_url: {dest} exists and is not a file ({state.kind})")
        data: bytes | None = None
        wanted_sum = args["sha256"]
        if args["src"] is not None:
            path = local_source(args, ctx)
            data = path.read_bytes()
            local_sum = hashlib.sha256(data).hexdigest()
            if wanted_sum is not None and local_sum != wanted_sum:
                raise ModuleError(
                    f"get_url: {path} has sha256 {local_sum}, not {wanted_sum}; nothing was copied"
                )
            wanted_sum = local_sum
        attrs = (args["mode"], args["owner"], args["group"])
        if state.kind == "file" and (wanted_sum is None or state.sha256 == wanted_sum):
            steps, notes = attribute_steps(dest, state, *attrs)
            return Change(tuple(steps), f"{dest}: {', '.join(notes)}") if steps else None
        mode = args["mode"] or (state.mode if state.kind == "file" else DEFAULT_FILE_MODE)
        owner = owner_spec(state, args["owner"], args["group"])
        verb = "replace" if state.kind == "file" else "create"
        if data is not None:
            step = put_step(dest, mode=mode, owner_spec=owner, sha256=wanted_sum or "", stdin=data)
            summary = f"{verb} {dest} from {args['src']} ({len(data)} bytes, sha256 {wanted_sum}, {mode})"
        else:
            source = download_argv(args["url"], facts["downloaders"], args["timeout"])
            step = put_step(dest, mode=mode, owner_spec=owner, sha256=wanted_sum or "", source=source)
            checked = f"sha256 {wanted_sum}" if wanted_sum else "no sha256 given"
            summary = f"{verb} {dest} from {args['url']} ({checked}, {mode})"
        return Change((step,), summary)


def local_source(args: Args, ctx: Context) -> Path:
    """The ``src`` file on the controller; ArgumentError when it is not there."""
    path = Path(args["src"]).expanduser()
    if not path.is_absolute():
        path = ctx.base_dir / path
    if not path.is_file():
        raise ArgumentError(f"src: no file {path} on the controller")
    return path
