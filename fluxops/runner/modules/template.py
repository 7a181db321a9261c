"""``template``: a file rendered on the controller from a jinja2 template in the playbook's ``templates/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fluxops.runner.module import Args, ArgumentError, Change, Context, Fact, Facts, Module, Param
from fluxops.runner.modules import register
from fluxops.runner.modules._files import (
    ATTRIBUTE_PARAMS,
    FileState,
    check_file_args,
    content_change,
    file_fact,
)
from fluxops.runner.modules._secrets import hide_content

TEMPLATES = "templates"


@register
class Template(Module):
    """Ansible's template: ``src`` is rendered with the host's variables and written to ``dest`` as
    ``file`` writes content (atomically, with a unified diff, mode/owner/group kept or set). Secret
    variables rendered into the file are masked in the diff and sent as a Secret on stdin."""

    name = "template"
    help = "a file rendered from a jinja2 template under the playbook's templates/"
    params = (
        Param("src", (str,), required=True, help="template file, relative to the playbook's templates/"),
        Param("dest", (str,), required=True, help="absolute path on the host"),
        *ATTRIBUTE_PARAMS,
    )

    @classmethod
    def check_args(cls, args: dict[str, Any]) -> None:
        """An absolute dest, an octal mode, a src that stays inside templates/."""
        check_file_args(args, "dest")
        src = Path(args["src"])
        if src.is_absolute() or ".." in src.parts or not src.parts:
            raise ArgumentError(f"src: {args['src']!r} must be a file name under the playbook's templates/")

    def facts(self, args: Args, ctx: Context) -> Sequence[Fact]:
        """The destination's state and content; ArgumentError when the template file is missing."""
        source(args, ctx)
        return (file_fact("dest", args["dest"], sha256=True),)

    def plan(self, args: Args, facts: Facts, ctx: Context) -> Change | None:
        """The rendered template written to dest, or None when dest already holds it."""
        rendered = ctx.render(source(args, ctx).read_text())
        state: FileState = facts["dest"]
        change = content_change(
            args["dest"],
            state,
            rendered.encode(),
            mode=args["mode"],
            owner=args["owner"],
            group=args["group"],
        )
        return hide_content(change, rendered, ctx.vars)


def source(args: Args, ctx: Context) -> Path:
    """The template file of the task on the controller."""
    path = ctx.base_dir / TEMPLATES / args["src"]
    if not path.is_file():
        raise ArgumentError(f"src: no template {path}")
    return path
