"""``slurp``: a file of the host read into the registered result; it never changes anything.

Ansible's slurp, for results such as a k3s server's join token: ``register: token`` gives
``token.content`` (the file's text, a secret unless ``secret: false``: masked wherever it is shown, and
accepted only by secret arguments, which reach hosts on stdin) and ``token.stat`` (kind, mode, size).
The file is read with the task's facts, so check mode reads it too; there a file that is not there yet
reads as empty. Unlike ``command``, it is ``ok``, never ``changed``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from fluxops.masking import Secret
from fluxops.runner.module import Args, Change, Context, Fact, Facts, Module, Param
from fluxops.runner.modules import register
from fluxops.runner.modules._errors import ModuleError
from fluxops.runner.modules._files import CONTENT_CAP, FileState, check_path, file_fact
from fluxops.shell import quote


def content_fact(path: str, secret: bool) -> Fact:
    """A fact with the text of ``path`` (up to the cap; empty when it is no file), a Secret if asked."""
    p = quote([path])
    script = f"if [ -f {p} ]; then head -c {CONTENT_CAP} {p} | base64; fi"

    def parse(out: str, rc: int) -> Secret | str:
        try:
            text = base64.b64decode(out).decode(errors="replace")
        except binascii.Error:
            raise ValueError("the host sent no base64") from None
        return Secret(text) if secret else text

    return Fact("content", script, parse)


@register
class Slurp(Module):
    """A file's text registered (``content``, secret by default) without changing the host."""

    name = "slurp"
    help = "a file of the host read into the registered result (content: secret unless secret: false)"
    params = (
        Param("src", (str,), required=True, help="absolute path on the host"),
        Param("secret", (bool,), default=True, help="register the content as a secret (masked)"),
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """An absolute src."""
        check_path("src", args["src"])

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """The file's kind and size, and its text."""
        return (
            file_fact("stat", args["src"], content=False),
            content_fact(args["src"], args["secret"]),
        )

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """Always None (ok); ModuleError when the file is missing (outside check mode) or too large."""
        state: FileState = facts["stat"]
        if state.kind != "file":
            if ctx.check and state.kind in {"absent", "link"}:
                return None
            raise ModuleError(f"slurp: {args['src']} is not a file on the host ({state.kind})")
        if state.size > CONTENT_CAP:
            size = state.size
            raise ModuleError(f"slurp: {args['src']} has {size} bytes; slurp reads files up to {CONTENT_CAP}")
        return None
