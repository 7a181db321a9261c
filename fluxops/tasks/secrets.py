"""invoke secrets.*: encrypted Secret manifests of the clusters and the plaintext guard."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from invoke import Context, Exit, task

from fluxops.errors import PartialError
from fluxops.masking import Secret
from fluxops.secrets import check as secrets_check
from fluxops.secrets import repository
from fluxops.tasks.common import config, required, user_errors

ARGV_WARNING = (
    "--from-literal puts the value on the command line, where the process list (ps) and your shell "
    "history show it"
)


def _stdin_value(key: str) -> Secret:
    """One value from stdin: a prompt without echo on a terminal, else all of it (one final newline off)."""
    if sys.stdin is None:
        raise Exit(f"error: --from-stdin {key}: there is no stdin", code=1)
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {key} (not shown): ")
    else:
        value = sys.stdin.read()
        value = value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")
    if not value:
        raise Exit(f"error: --from-stdin {key}: no value given", code=1)
    return Secret(value)


@task(
    iterable=["from_literal", "from_file", "from_env"],
    help={
        "name": "name of the Secret (metadata.name)",
        "cluster": "cluster whose tree gets the file and whose key encrypts it",
        "namespace": "namespace of the Secret",
        "from_file": "KEY=PATH, repeatable: the file's content as the value",
        "from_env": "KEY=ENVVAR, repeatable: the value of environment variable ENVVAR",
        "from_stdin": "KEY: one value read from stdin (asked without echo on a terminal)",
        "from_literal": "KEY=VALUE, repeatable; refused without --allow-argv (ps and history show it)",
        "allow_argv": "accept --from-literal values although they show in the process list",
        "dest": "file to write (default k8s/clusters/<cluster>/infrastructure-config/<name>.sops.yaml)",
        "force": "replace an existing file",
    },
    positional=["name"],
    auto_shortflags=False,  # long flags only: no new meaning for an old short flag, no "-" flag
)
@user_errors
def new(
    c: Context,
    name: str,
    cluster: str | None = None,
    namespace: str | None = None,
    from_literal: list[str] | None = None,
    from_file: list[str] | None = None,
    dest: str | None = None,
    force: bool = False,
    from_env: list[str] | None = None,
    from_stdin: str | None = None,
    allow_argv: bool = False,
) -> None:
    """Write an encrypted Secret manifest and add it to its kustomization.yaml."""
    cluster = required(cluster, "cluster")
    namespace = required(namespace, "namespace")
    if from_literal and not allow_argv:
        raise Exit(
            f"error: {ARGV_WARNING}. Give the value with --from-file KEY=PATH, --from-env KEY=ENVVAR or "
            "--from-stdin KEY instead, or pass --allow-argv to accept that.",
            code=1,
        )
    if from_literal:
        print(f"warning: {ARGV_WARNING}", file=sys.stderr)
    settings = config(c)
    done = repository.new(
        settings.root,
        settings.key_dir,
        cluster,
        name,
        namespace,
        literals=from_literal or [],
        files=from_file or [],
        envs=from_env or [],
        values={from_stdin: _stdin_value(from_stdin)} if from_stdin else None,
        dest=dest,
        force=force,
    )
    print(f"wrote {done.path} (encrypted)")
    if done.kustomization is not None:
        print(f"{'added to' if done.added else 'already in'} {done.kustomization}")


@task(
    help={
        "cluster": "cluster whose referenced secrets to write",
        "force": "also replace files you can read some other way, or that use PGP/KMS keys",
    },
    positional=[],
)
@user_errors
def scaffold(c: Context, cluster: str | None = None, force: bool = False) -> None:
    """Write placeholder secrets (your key) for every referenced secret file that is missing or not yours."""
    cluster = required(cluster, "cluster")
    settings = config(c)
    results = repository.scaffold(settings.root, settings.key_dir, cluster, force=force)
    for item in results:
        extra = f" ({item.reason})" if item.reason else ""
        print(f"{item.state:>9}  {item.path.relative_to(settings.root)}{extra}")
    written = sum(r.state == "written" for r in results)
    if written:
        print(f"{written} file(s) hold placeholder values; set the real ones with `invoke secrets.edit FILE`")
    bad = [r for r in results if r.state in ("plaintext", "damaged")]
    if bad:
        raise Exit(
            f"error: {len(bad)} file(s) left untouched: encrypt plaintext ones (`invoke secrets.encrypt`), "
            "restore damaged ones from git",
            code=1,
        )


@task(help={"cluster": "only this cluster (default: every cluster)"})
@user_errors
def encrypt(c: Context, cluster: str | None = None) -> None:
    """Encrypt every plaintext *.sops.yaml in place; encrypted files are left as they are."""
    settings = config(c)
    try:
        done = repository.encrypt(settings.root, cluster)
    except PartialError as exc:
        for path in exc.done:
            print(f"encrypted {Path(str(path)).relative_to(settings.root)}")
        raise Exit(f"error: {exc}\n{len(exc.done)} file(s) were encrypted before that", code=1) from None
    for path in done.changed:
        print(f"encrypted {path.relative_to(settings.root)}")
    print(f"{len(done.changed)} file(s) encrypted")
    if done.damaged:
        for path, problem in done.damaged:
            print(f"damaged   {path.relative_to(settings.root)}: {problem}", file=sys.stderr)
        raise Exit(f"error: {len(done.damaged)} damaged file(s) left untouched", code=1)


@task(help={"cluster": "only this cluster (default: every cluster)"})
@user_errors
def rekey(c: Context, cluster: str | None = None) -> None:
    """Re-wrap every encrypted file for the recipients its .sops.yaml rule names now (updatekeys)."""
    settings = config(c)
    results = repository.rekey(settings.root, settings.key_dir, cluster)
    for item in results:
        extra = f": {item.detail}" if item.detail else ""
        print(f"{item.outcome:>9}  {item.path.relative_to(settings.root)}{extra}")
    updated = sum(r.outcome == "updated" for r in results)
    unchanged = sum(r.outcome == "unchanged" for r in results)
    failed = len(results) - updated - unchanged
    print(f"{updated} file(s) re-keyed, {unchanged} already up to date, {failed} not re-keyed")
    if failed:
        raise Exit(f"error: {failed} of {len(results)} file(s) could not be re-keyed (see above)", code=1)


@task(help={"file": "encrypted file to print decrypted"})
@user_errors
def view(c: Context, file: str) -> None:
    """Print an encrypted file decrypted (to stdout only)."""
    settings = config(c)
    sys.stdout.write(repository.view(settings.root, settings.key_dir, file).reveal())


@task(help={"file": "encrypted file to edit in $EDITOR through sops"})
@user_errors
def edit(c: Context, file: str) -> None:
    """Edit an encrypted file in $EDITOR (sops decrypts to a private temp file and re-encrypts)."""
    settings = config(c)
    rc = repository.edit(settings.root, settings.key_dir, file)
    if rc == 0:
        print(f"saved {file} (re-encrypted)")
    elif rc == 200:  # sops: the file was not changed
        print(f"{file} unchanged")
    else:
        raise Exit(f"error: sops edit exited {rc}; {file} was not changed", code=1)


@task
@user_errors
def check(c: Context) -> None:
    """Fail on a private key, plaintext or damaged secret, bad MAC (key at hand) or wrong recipients."""
    settings = config(c)
    report = secrets_check.scan(settings.root, settings.key_dir)
    lines = [str(f) for f in report.findings]
    if not report.findings:
        lines.append(secrets_check.summary(report))
    secrets_check.emit(lines, sys.stdout)
    if report.findings:
        raise Exit(secrets_check.summary(report), code=1)
