"""invoke keys.*: per-cluster age keys and their rotation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from invoke import Context, Exit

from fluxops.progname import command
from fluxops.tasks.common import FAILED, config, from_cwd, print_json, required, task, usage, user_errors

# The class keys.rotate runs; None means fluxops.secrets.rotation.Rotation, imported by the task itself so
# that listing the tasks does not load it. A harness may put a subclass here (tests/unit/rotation_crasher.py).
Rotation: Any = None


@task(
    help={
        "cluster": "cluster to make a key for (a folder under k8s/clusters/)",
        "force": "replace an existing key (archived, never deleted), or add one beside a recipient that "
        "files are still encrypted to (kept in the rule)",
    },
    positional=[],
)
@user_errors
def generate(c: Context, cluster: str | None = None, force: bool = False) -> None:
    """Make the cluster's age key (0600, outside git) and point its .sops.yaml rule at it."""
    from fluxops.secrets import keys as lib

    cluster = required(cluster, "cluster")
    settings = config(c)
    _report_key(settings.root, cluster, lib.generate(settings.root, settings.key_dir, cluster, force=force))


@task(
    help={
        "cluster": "cluster the key belongs to",
        "file": "an age key file (age-keygen format, one identity), e.g. from your backup; relative to "
        "the current directory",
        "force": "replace a different key in the store (archived), or add this key beside a recipient "
        "that files are still encrypted to (kept in the rule)",
    },
    name="import",
    positional=["file"],
)
@user_errors
def import_(c: Context, file: str, cluster: str | None = None, force: bool = False) -> None:
    """Bring an existing age key into the key store (0600) as the cluster's key; never prints it."""
    from fluxops.secrets import keys as lib

    cluster = required(cluster, "cluster")
    settings = config(c)
    done = lib.import_key(settings.root, settings.key_dir, cluster, from_cwd(file), force=force)
    _report_key(settings.root, cluster, done)


def _report_key(root: Path, cluster: str, done: Any) -> None:
    """What generate/import did (``fluxops.secrets.keys.Generated``), ending with the one-line outcome."""
    from fluxops.secrets import rules

    if done.archived:
        print(f"old key archived to {done.archived}")
    print(f"private key: {done.key.path} (0600; back it up, never commit it)")
    rule = ", ".join(rules.cluster_recipients(root, cluster))
    print(".sops.yaml rule " + ("updated" if done.config_changed else "already up to date") + f": {rule}")
    if done.stale:
        print(f"{len(done.stale)} file(s) are not encrypted to this key yet, e.g. {done.stale[0]}")
        rekey = command(f"secrets.rekey --cluster {cluster}")
        if done.archived:
            print(f"re-key them with the old key: SOPS_AGE_KEY_FILE={done.archived} {rekey}")
        else:
            print(f"if you hold their key: SOPS_AGE_KEY_FILE=<that key file> {rekey}")
            print(
                "files encrypted only to keys nobody holds any more: "
                f"`{command(f'secrets.scaffold --cluster {cluster}')}` writes placeholders for them "
                "(it never touches a file you can read)"
            )
    print(f"cluster {cluster}: public key {done.key.public}")


@task(
    help={
        "cluster": "only this cluster (default: every cluster under k8s/clusters/)",
        "json": "print each cluster's key as JSON instead of text",
    }
)
@user_errors
def show(c: Context, cluster: str | None = None, json_: bool = False) -> None:
    """Print each cluster's public key and where its private key lives (never the key itself)."""
    from fluxops.secrets import keys as lib

    settings = config(c)
    infos = lib.show(settings.root, settings.key_dir, cluster)
    problems = [i.cluster for i in infos if i.problem]
    if json_:
        print_json(
            {
                "ok": not problems,
                "clusters": [
                    {
                        "cluster": i.cluster,
                        "public": i.public,
                        "key_file": str(i.key_file),
                        "missing": not i.public,
                        "rule_recipients": list(i.rule_recipients),
                        "override": i.override,
                        "problem": i.problem,
                        "hint": i.hint,
                    }
                    for i in infos
                ],
            }
        )
    else:
        for info in infos:
            print(f"{info.cluster}:")
            print(f"  public key:   {info.public or '-'}")
            print(f"  private key:  {info.key_file}{'' if info.public else ' (missing)'}")
            print(f"  .sops.yaml:   {', '.join(info.rule_recipients) or 'no rule'}")
            if info.override:
                print(f"  override:     {info.override}")
            if info.problem:
                print(f"  problem:      {info.problem}")
            elif not info.public and info.hint:
                print(f"  next:         {info.hint}")
    if problems:
        raise Exit(f"error: key problem in cluster(s) {', '.join(problems)} (see above)", code=FAILED)


@task(
    help={
        "cluster": "only this cluster's key (default: every cluster's)",
        "json": "print the variables, the key file of each cluster and the clusters without a key as JSON",
    }
)
@user_errors
def env(c: Context, cluster: str | None = None, json_: bool = False) -> None:
    """Print the shell line that lets plain sops and editor plugins use the key store (paths, never a key).

    Use it as: eval "$(invoke keys.env)"  (or fluxops keys.env)
    """
    from fluxops.secrets import keys as lib

    settings = config(c)
    done = lib.shell_env(settings.root, settings.key_dir, cluster)
    if json_:
        print_json(done.to_dict())
        return
    for line in done.lines:
        print(line)
    if done.missing:
        print(f"# no key yet for: {', '.join(done.missing)} ({command('keys.generate')})", file=sys.stderr)


@task(
    help={
        "cluster": "cluster whose key to rotate",
        "check": "print the plan (and the state of an interrupted rotation); change nothing",
        "resume": "continue an interrupted rotation from its journal",
        "offline": "skip the two steps that put keys into the cluster",
        "json": "with --check: print the plan (files, keys, each step's state) as JSON",
    },
    positional=[],
)
@user_errors
def rotate(
    c: Context,
    cluster: str | None = None,
    check: bool = False,
    resume: bool = False,
    offline: bool = False,
    json_: bool = False,
) -> None:
    """Rotate the cluster's age key: new key, re-encrypt every file, retire the old key (journaled)."""
    from fluxops import progress
    from fluxops.secrets import rotation as lib

    cluster = required(cluster, "cluster")
    if json_ and not check:
        raise usage("keys.rotate --json goes with --check (the plan as JSON; a rotation prints its steps)")
    settings = config(c)
    rotation = (Rotation or lib.Rotation)(
        settings.root, settings.key_dir, cluster, offline=offline, inventory=settings.inventory
    )
    if check:
        if json_:
            print_json(rotation.plan_data())
        else:
            print("\n".join(rotation.plan()))
        return
    observer = rotation.on_step
    with progress.shown(f"rotating the key of {cluster}") as steps_done:

        def on_step(number: int) -> None:
            observer(number)
            steps_done(number, len(lib.STEPS))

        rotation.on_step = on_step
        rotation.run(resume=resume)
