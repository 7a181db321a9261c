"""invoke's ``-c``/``--collection`` after a task name that has no ``-c``: a usage error, not a silent no-op.

invoke parses the core flags before the task name first (``Program.parse_core``); the rest of the
line goes to the task parser, which reads a token as the current task's own flag when the task has
it and otherwise, without a word, as a core flag (``invoke.parser.Parser.handle``: an
"initial-context flag being given as per-task flag"). So ``invoke sandbox.up -c x`` sets
``--collection x`` after the collection was loaded, and nothing comes of it. Every fluxops task
with ``-c`` means ``--cluster`` by it; on a task without one, the line is refused (exit 2).
``fluxops`` has no ``--collection``: its parser rejects such a ``-c`` itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from invoke import Collection, ParseError, Program
from invoke.parser import Parser, ParserContext

COLLECTION_FLAGS = ("-c", "--collection")
INVOKE_SCRIPTS = ("invoke", "inv")


def misplaced_collection(argv: list[str], collection: Collection) -> str | None:
    """The usage error of invoke's ``--collection`` given after a task that has no such flag, if any.

    ``argv`` is invoke's command line without the program name. It is parsed twice as invoke parses
    it: once for the core flags, then the task part without ``--collection`` among the core flags,
    so a ``-c`` no task takes is the parse error it would be under ``fluxops``.
    """
    core = Parser(initial=Program().initial_context, ignore_unknown=True).parse_argv(argv)
    if not any(token.split("=", 1)[0] in COLLECTION_FLAGS for token in core.unparsed):
        return None
    without = [arg for arg in Program().initial_context.args.values() if "collection" not in arg.names]
    try:
        Parser(initial=ParserContext(args=without), contexts=collection.to_contexts()).parse_argv(
            core.unparsed
        )
    except ParseError as exc:
        task = exc.context.name if exc.context is not None and exc.context.name else "the task"
        flag = "--collection" if "--collection" in str(exc) else "-c"
        return (
            f"{task} has no -c/--cluster: invoke would take {flag} after it as its own --collection "
            "and ignore it (invoke's -c goes before the task name)"
        )
    return None


def under_invoke_cli() -> bool:
    """Is this process the ``invoke`` command (``invoke ...``, ``inv ...`` or ``python -m invoke``)?"""
    script = sys.argv[0] if sys.argv else ""
    return Path(script).name in INVOKE_SCRIPTS or script.endswith(os.path.join("invoke", "__main__.py"))
