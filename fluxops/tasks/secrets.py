"""invoke secrets.*: encrypted Secret manifests of the clusters and the plaintext guard."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from invoke import Context, Exit

from fluxops.progname import progname
from fluxops.tasks.common import (
    FAILED,
    config,
    from_cwd,
    print_json,
    relative,
    required,
    task,
    user_errors,
)

ARGV_WARNING = (
    "--from-literal puts the value on the command line, where the process list (ps) and your shell "
    "history show it"
)
CLUSTER_HELP = "only this cluster (default: every cluster)"


def _stdin_value(key: str) -> Any:
    """One value from stdin: a prompt without echo on a terminal, else all of it (one final newline off)."""
    import getpass

    from fluxops.masking import Secret

    if sys.stdin is None:
        raise Exit(f"error: --from-stdin {key}: there is no stdin", code=FAILED)
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {key} (not shown): ")
    else:
        value = sys.stdin.read()
        value = value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")
    if not value:
        raise Exit(f"error: --from-stdin {key}: no value given", code=FAILED)
    return Secret(value)


@task(
    iterable=["from_literal", "from_file", "from_env"],
    help={
        "name": "name of the Secret (metadata.name)",
        "cluster": "cluster whose tree gets the file and whose key encrypts it",
        "namespace": "namespace of the Secret",
        "from_file": "KEY=PATH, repeatable: the file's content as the value (PATH relative to the current "
        "directory)",
        "from_env": "KEY=ENVVAR, repeatable: the value of environment variable ENVVAR",
        "from_stdin": "KEY: one value read from stdin (asked without echo on a terminal)",
        "from_literal": "KEY=VALUE, repeatable; refused without --allow-argv (ps and history show it)",
        "allow_argv": "accept --from-literal values although they show in the process list",
        "dest": "file to write, relative to the current directory (default: NAME.sops.yaml in the "
        "cluster's one folder that Flux decrypts into --namespace)",
        "force": "replace an existing file",
    },
    positional=["name"],
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
    from fluxops.secrets import repository

    cluster = required(cluster, "cluster")
    namespace = required(namespace, "namespace")
    if from_literal and not allow_argv:
        raise Exit(
            f"error: {ARGV_WARNING}. Give the value with --from-file KEY=PATH, --from-env KEY=ENVVAR or "
            "--from-stdin KEY instead, or pass --allow-argv to accept that.",
            code=FAILED,
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
        dest=from_cwd(dest) if dest else None,
        force=force,
    )
    if done.kustomization is not None:
        print(f"{'added to' if done.added else 'already in'} {done.kustomization}")
    print(f"wrote {done.path} (encrypted)")


@task(
    help={
        "cluster": "cluster whose referenced secrets to write",
        "force": "also replace files you can read some other way, or that use PGP/KMS keys",
        "json": "print what happened to each file as JSON instead of a line per file",
    },
    positional=[],
)
@user_errors
def scaffold(c: Context, cluster: str | None = None, force: bool = False, json_: bool = False) -> None:
    """Write placeholder secrets (your key) for every referenced secret file that is missing or not yours."""
    from fluxops.secrets import repository

    cluster = required(cluster, "cluster")
    settings = config(c)
    results = repository.scaffold(settings.root, settings.key_dir, cluster, force=force)
    written = sum(r.state == "written" for r in results)
    bad = [r for r in results if r.state in ("plaintext", "damaged")]
    if json_:
        files = [
            {"path": relative(settings.root, r.path), "state": r.state, "reason": r.reason} for r in results
        ]
        print_json({"ok": not bad, "written": written, "files": files})
    else:
        for item in results:
            extra = f" ({item.reason})" if item.reason else ""
            print(f"{item.state:>9}  {relative(settings.root, item.path)}{extra}")
        if written:
            edit = f"{progname()} secrets.edit FILE"
            print(f"{written} file(s) hold placeholder values; set the real ones with `{edit}`")
    if bad:
        raise Exit(
            f"error: {len(bad)} file(s) left untouched: encrypt plaintext ones "
            f"(`{progname()} secrets.encrypt`), restore damaged ones from git",
            code=FAILED,
        )
    if not json_:
        print(f"secrets of {cluster}: {len(results)} file(s) checked, {written} written")


@task(help={"cluster": CLUSTER_HELP, "json": "print the files encrypted and left alone as JSON"})
@user_errors
def encrypt(c: Context, cluster: str | None = None, json_: bool = False) -> None:
    """Encrypt every plaintext *.sops.yaml in place; encrypted files are left as they are."""
    from fluxops.errors import PartialError
    from fluxops.secrets import repository

    root = config(c).root

    def report(changed: list[Path], damaged: list[tuple[Path, str]], error: str | None) -> None:
        if json_:
            print_json(
                {
                    "ok": not damaged and error is None,
                    "encrypted": [relative(root, p) for p in changed],
                    "damaged": [{"path": relative(root, p), "problem": problem} for p, problem in damaged],
                    "error": error,
                }
            )
            return
        for path in changed:
            print(f"encrypted {relative(root, path)}")
        for path, problem in damaged:
            print(f"damaged   {relative(root, path)}: {problem}", file=sys.stderr)

    try:
        done = repository.encrypt(root, cluster)
    except PartialError as exc:
        report([Path(str(p)) for p in exc.done], [], str(exc))
        raise Exit(f"error: {exc}\n{len(exc.done)} file(s) were encrypted before that", code=FAILED) from None
    report(done.changed, done.damaged, None)
    if done.damaged:
        raise Exit(f"error: {len(done.damaged)} damaged file(s) left untouched", code=FAILED)
    if not json_:
        print(f"{len(done.changed)} file(s) encrypted")


@task(help={"cluster": CLUSTER_HELP, "json": "print each file's outcome and the counts as JSON"})
@user_errors
def rekey(c: Context, cluster: str | None = None, json_: bool = False) -> None:
    """Re-wrap every encrypted file for the recipients its .sops.yaml rule names now (updatekeys)."""
    from fluxops import progress
    from fluxops.secrets import repository

    settings = config(c)
    with progress.shown("re-keying encrypted files"):
        results = repository.rekey(settings.root, settings.key_dir, cluster)
    updated = sum(r.outcome == "updated" for r in results)
    unchanged = sum(r.outcome == "unchanged" for r in results)
    failed = len(results) - updated - unchanged
    if json_:
        print_json(
            {
                "ok": not failed,
                "updated": updated,
                "unchanged": unchanged,
                "failed": failed,
                "files": [
                    {"path": relative(settings.root, r.path), "outcome": r.outcome, "detail": r.detail}
                    for r in results
                ],
            }
        )
    else:
        for item in results:
            extra = f": {item.detail}" if item.detail else ""
            print(f"{item.outcome:>9}  {relative(settings.root, item.path)}{extra}")
        print(f"{updated} file(s) re-keyed, {unchanged} already up to date, {failed} not re-keyed")
    if failed:
        raise Exit(
            f"error: {failed} of {len(results)} file(s) could not be re-keyed (see above)", code=FAILED
        )


@task(help={"file": "encrypted file to print decrypted, relative to the current directory"})
@user_errors
def view(c: Context, file: str) -> None:
    """Print an encrypted file decrypted (to stdout only)."""
    from fluxops.secrets import repository

    settings = config(c)
    sys.stdout.write(repository.view(settings.root, settings.key_dir, from_cwd(file)).reveal())


@task(help={"file": "encrypted file to edit in $EDITOR through sops, relative to the current directory"})
@user_errors
def edit(c: Context, file: str) -> None:
    """Edit an encrypted file in $EDITOR (sops decrypts to a private temp file and re-encrypts)."""
    from fluxops.secrets import repository

    settings = config(c)
    rc = repository.edit(settings.root, settings.key_dir, from_cwd(file))
    if rc == 0:
        print(f"saved {file} (re-encrypted)")
    elif rc == 200:  # sops: the file was not changed
        print(f"{file} unchanged")
    else:
        raise Exit(f"error: sops edit exited {rc}; {file} was not changed", code=FAILED)


@task(help={"json": "print the findings and counts as JSON instead of a line per finding"})
@user_errors
def check(c: Context, json_: bool = False) -> None:
    """Fail on a private key, plaintext or damaged secret, bad MAC (key at hand) or wrong recipients."""
    from fluxops.secrets import check as secrets_check

    settings = config(c)
    report = secrets_check.scan(settings.root, settings.key_dir)
    summary = secrets_check.summary(report)
    if json_:
        print_json(
            {
                "ok": not report.findings,
                "encrypted": report.encrypted,
                "verified": report.verified,
                "summary": summary,
                "findings": [
                    {"path": f.path, "line": f.line or None, "code": f.code, "reason": f.reason}
                    for f in report.findings
                ],
            }
        )
    else:
        lines = [str(f) for f in report.findings]
        if not report.findings:
            lines.append(summary)
        secrets_check.emit(lines, sys.stdout)
    if report.findings:
        raise Exit(f"error: {summary}", code=FAILED)
