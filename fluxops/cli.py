"""The ``fluxops`` command: invoke's Program with the fluxops tasks, usable in any Flux repository.

Unlike ``invoke`` it needs no ``tasks.py``: the tasks are built in, and the repository is the nearest
folder at or above the current one holding ``invoke.yaml`` or ``.git`` (or ``--path`` /
``FLUXOPS_PATH``). That folder's ``invoke.yaml`` overrides the built-in settings, as it does under
invoke. Its own core flags: invoke's, without ``--collection``/``--search-root`` (so ``-c`` is every
task's ``--cluster``), plus ``--path``. Usage errors are ``error: ...`` and exit 2 (docs/cli.md).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from itertools import pairwise
from pathlib import Path

from invoke import Argument, Exit, ParseError, Program, UnexpectedExit

import fluxops
from fluxops.tasks.common import FAILED, USAGE, quiet_stdout, set_program_name

ROOT_MARKERS = ("invoke.yaml", ".git")
PATH_ENV = "FLUXOPS_PATH"
NAME = "fluxops"
CLUSTER_FLAGS = ("--cluster", "-c")

# zsh's script as invoke ships it, less its --collection detection (-c is --cluster here)
ZSH_COMPLETION = """\
# fluxops tab completion for zsh: eval "$(fluxops --print-completion-script zsh)"
_complete_fluxops() {
    reply=( $(fluxops --complete -- ${words}) )
}
compctl -K _complete_fluxops + -f fluxops
"""


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` with ``invoke.yaml`` or ``.git``; ``start`` if none."""
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return start


def cluster_names(root: Path) -> list[str]:
    """Cluster names to complete ``--cluster`` with: the clusters ``layout.*`` finds in the repository
    (its entry Kustomizations, ``fluxops.layout`` settings), else the folders under ``k8s/clusters``."""
    from fluxops import clusters
    from fluxops.errors import FluxopsError

    try:
        from fluxops.layout.discovery import discover, sources_scope
        from fluxops.layout.sources import read_sources
        from fluxops.settings import repository_layout

        layout = repository_layout(root)
        sources = read_sources(root, [root / folder for folder in sources_scope(root, layout)])
        found = {c.name for c in discover(root, sources, layout).clusters}
    except FluxopsError:
        found = set()
    return sorted(found) or clusters.names(root)


class FluxopsProgram(Program):
    """invoke's Program for the fluxops namespace: repository root, defaults, errors and completion."""

    def core_args(self) -> list[Argument]:
        path = Argument(
            names=("path",),
            help="the repository to work on (default: the nearest folder at or above the current one "
            f"with invoke.yaml or .git; also {PATH_ENV})",
        )
        return [*super().core_args(), path]

    def repository_root(self) -> Path:
        """The folder tasks work on: ``--path``, else ``FLUXOPS_PATH``, else found from the cwd upward."""
        given = self.args.path.value or os.environ.get(PATH_ENV)
        if not given:
            return find_root(Path.cwd())
        root = Path(os.path.abspath(Path(given).expanduser()))
        if not root.is_dir():
            raise Exit(f"error: --path {given}: no such folder", code=USAGE)
        return root

    def update_config(self, merge: bool = True) -> None:
        # the repository's invoke.yaml is the project config, as tasks.py's folder is under invoke
        self.config.set_project_location(str(self.repository_root()))
        self.config.load_project(merge=False)
        super().update_config(merge)

    def parse_cleanup(self) -> None:
        if self.args.complete.value and self._complete_cluster():
            raise Exit
        super().parse_cleanup()

    def parse_core(self, argv: list[str] | None) -> None:
        self.normalize_argv(argv)
        self.parse_core_args()
        if self.args["print-completion-script"].value == "zsh":
            print(ZSH_COMPLETION, end="")
            raise Exit
        super().parse_core(argv)

    def _complete_cluster(self) -> bool:
        """Print cluster names when the word being completed is the value of ``--cluster``/``-c``."""
        invocation = re.sub(rf"^({'|'.join(map(re.escape, self.binary_names))}) ", "", self.core.remainder)
        try:
            tokens = shlex.split(invocation)
        except ValueError:
            return False
        if not tokens:
            return False
        after_flag = tokens[-1] in CLUSTER_FLAGS
        typing_value = len(tokens) > 1 and tokens[-2] in CLUSTER_FLAGS and not tokens[-1].startswith("-")
        if not (after_flag or typing_value):
            return False
        # the line being completed is not parsed: a --path on it names the repository
        given = [v for flag, v in pairwise(tokens) if flag == "--path"]
        given += [t.removeprefix("--path=") for t in tokens if t.startswith("--path=")]
        root = Path(given[-1]).expanduser().absolute() if given else self.repository_root()
        for name in cluster_names(root):
            print(name)
        return True

    def run(self, argv: list[str] | None = None, exit: bool = True) -> None:
        """invoke's run, with one error prefix and exit codes: 0 ok, 1 failure, 2 usage, 130 interrupted."""
        code = 0
        try:
            self.create_config()
            self.parse_core(argv)
            self.parse_collection()
            self.parse_tasks()
            self.parse_cleanup()
            self.update_config()
            self.execute()
        except ParseError as exc:
            print(f"error: {exc} (see `{NAME} --help` and `{NAME} --help TASK`)", file=sys.stderr)
            code = USAGE
        except Exit as exc:
            if exc.message:
                print(exc.message, file=sys.stderr)
            code = exc.code
        except UnexpectedExit as exc:
            if exc.result.hide:
                print(exc, file=sys.stderr, end="")
            code = exc.result.exited or FAILED
        except BrokenPipeError:
            quiet_stdout()
            code = FAILED
        except KeyboardInterrupt:
            code = 130
        if exit:
            sys.exit(code)


def build_program() -> FluxopsProgram:
    """The ``fluxops`` program over the fluxops task namespace."""
    from fluxops.tasks import namespace

    return FluxopsProgram(
        version=fluxops.__version__, namespace=namespace(), name="fluxops", binary=NAME, binary_names=[NAME]
    )


def main() -> None:
    """Entry point of the ``fluxops`` console script."""
    set_program_name(NAME)
    build_program().run()


if __name__ == "__main__":
    main()
