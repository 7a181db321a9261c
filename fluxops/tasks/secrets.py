"""invoke secrets.*: encrypted Secret manifests of the clusters and the plaintext guard."""

from __future__ import annotations

import sys

from invoke import Context, Exit, task

from fluxops.secrets import check as secrets_check
from fluxops.secrets import repository
from fluxops.tasks.common import config, required, user_errors


@task(
    iterable=["from_literal", "from_file"],
    help={
        "name": "name of the Secret (metadata.name)",
        "cluster": "cluster whose tree gets the file and whose key encrypts it",
        "namespace": "namespace of the Secret",
        "from_literal": "KEY=VALUE, repeatable (the value never touches the disk unencrypted)",
        "from_file": "KEY=PATH, repeatable: the file's content as the value",
        "dest": "file to write (default k8s/clusters/<cluster>/infrastructure-config/<name>.sops.yaml)",
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
) -> None:
    """Write an encrypted Secret manifest and add it to its kustomization.yaml."""
    cluster = required(cluster, "cluster")
    namespace = required(namespace, "namespace")
    settings = config(c)
    done = repository.new(
        settings.root,
        settings.key_dir,
        cluster,
        name,
        namespace,
        literals=from_literal or [],
        files=from_file or [],
        dest=dest,
        force=force,
    )
    print(f"wrote {done.path} (encrypted)")
    if done.kustomization is not None:
        print(f"{'added to' if done.added else 'already in'} {done.kustomization}")


@task(help={"cluster": "cluster whose referenced secrets to write"}, positional=[])
@user_errors
def scaffold(c: Context, cluster: str | None = None) -> None:
    """Write placeholder secrets (your key) for every referenced *.sops.yaml you cannot decrypt."""
    cluster = required(cluster, "cluster")
    settings = config(c)
    results = repository.scaffold(settings.root, settings.key_dir, cluster)
    todo = [r for r in results if r.state == "written"]
    for item in results:
        extra = f" ({item.reason})" if item.reason else ""
        print(f"{item.state:>9}  {item.path.relative_to(settings.root)}{extra}")
    if todo:
        print(
            f"{len(todo)} file(s) hold placeholder values; set the real ones with `invoke secrets.edit FILE`"
        )
    if any(r.state == "plaintext" for r in results):
        raise Exit("plaintext secret files found: run `invoke secrets.encrypt`", code=1)


@task(help={"cluster": "only this cluster (default: every cluster)"})
@user_errors
def encrypt(c: Context, cluster: str | None = None) -> None:
    """Encrypt every plaintext *.sops.yaml in place; encrypted files are left as they are."""
    settings = config(c)
    changed = repository.encrypt(settings.root, cluster)
    for path in changed:
        print(f"encrypted {path.relative_to(settings.root)}")
    print(f"{len(changed)} file(s) encrypted")


@task(help={"cluster": "only this cluster (default: every cluster)"})
@user_errors
def rekey(c: Context, cluster: str | None = None) -> None:
    """Re-wrap every encrypted file for the recipients its .sops.yaml rule names now (updatekeys)."""
    settings = config(c)
    files = repository.rekey(settings.root, settings.key_dir, cluster)
    print(f"{len(files)} file(s) re-keyed for the recipients in .sops.yaml")


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
    if rc not in (0, 200):  # 200: sops says the file was not changed
        raise Exit(f"sops edit exited {rc}", code=rc)


@task
@user_errors
def check(c: Context) -> None:
    """Fail on any plaintext secret, Secret outside *.sops.yaml, or wrong recipients."""
    settings = config(c)
    findings = secrets_check.check(settings.root)
    for finding in findings:
        print(finding)
    if findings:
        raise Exit(f"{len(findings)} secret problem(s) found", code=1)
    print("secrets: ok")
