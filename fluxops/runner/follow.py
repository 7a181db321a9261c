"""A change's last command and the next fact batch in one round trip.

After a task changes the host, the facts read before are stale and the next task reads its batch
again. Instead, the change's last command can run in one ``sh -c`` script with that batch: the
command runs as it would on its own (its stdin, output and exit code are its own); if it fails, the
script exits with its exit code and prints nothing more; if it succeeds, the script prints a
separator line (a fresh random marker) on stdout and on stderr, then runs the batch. The runner
splits each stream at the separator: what comes before is the command's, what follows the batch's.

The command only shares a script when that changes nothing about how it runs: not a shell builtin
or keyword (run on its own, ``timeout`` or the login shell would start the program instead), and the
script fits on a command line. Where its program cannot be found, the script runs nothing and says
so (the separator and ``absent``), so that the command runs on its own and fails as it always has.
Secret input stays on stdin; the caller keeps secrets out of the script (it is an argument of
``sh``). The command's time limit covers the read that follows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fluxops.shell import quote

# the longest script given to ``sh -c`` (Linux takes up to 128 KiB in one argument)
MAX_SCRIPT = 64 * 1024

# words sh would run itself rather than start a program of that name
_WORDS = """! . : [ [[ { } alias bg break case cd command continue do done echo elif else esac eval exec exit
export false fc fg fi for function getopts hash if in jobs kill local printf pwd read readonly return
select set shift test then time times trap true type ulimit umask unalias unset until wait while"""
SHELL_WORDS = frozenset(_WORDS.split())


@dataclass(frozen=True)
class Split:
    """The combined script's output, parted: the command's streams, and the batch's when it ran."""

    stdout: str
    stderr: str
    ran_batch: bool
    batch_stdout: str = ""
    batch_stderr: str = ""
    absent: bool = False  # the command's program was not found: nothing ran


def can_share(argv: Sequence[str]) -> bool:
    """True when ``argv`` runs the same inside a script as on its own."""
    return bool(argv) and argv[0] not in SHELL_WORDS and "=" not in argv[0]


def script(argv: Sequence[str], batch_script: str, separator: str) -> str | None:
    """The ``sh`` script running ``argv`` and then, if it exits 0, ``batch_script``; None if too long."""
    program = quote(argv[:1])
    found = f"[ -f {program} ] && [ -x {program} ]" if "/" in argv[0] else f"command -v {program} >/dev/null"
    text = "\n".join(
        [
            f"if ! {{ {found}; }} 2>/dev/null; then printf '%s absent\\n' {separator}; exit 0; fi",
            quote(argv),
            'r=$?; if [ "$r" -ne 0 ]; then exit "$r"; fi',
            f"printf '\\n%s\\n' {separator}; printf '\\n%s\\n' {separator} >&2",
            batch_script,
        ]
    )
    return text if len(text) <= MAX_SCRIPT else None


def split(stdout: str, stderr: str, separator: str) -> Split:
    """Part the script's output at ``separator``; without it on stdout, the batch did not run."""
    if stdout == f"{separator} absent\n":
        return Split("", "", ran_batch=False, absent=True)
    line = f"\n{separator}\n"
    at = stdout.find(line)
    if at < 0:
        return Split(stdout, stderr, ran_batch=False)
    err_at = stderr.find(line)
    if err_at < 0:  # the separator reached stdout only: the stderr is all the command's
        return Split(stdout[:at], stderr, True, stdout[at + len(line) :], "")
    return Split(stdout[:at], stderr[:err_at], True, stdout[at + len(line) :], stderr[err_at + len(line) :])
