"""invoke keys.*: per-cluster age keys and their rotation."""

from __future__ import annotations

from invoke import Context, task

from fluxops.secrets import keys as lib
from fluxops.secrets.rotation import Rotation
from fluxops.tasks.common import config, required, user_errors


@task(
    help={
        "cluster": "cluster to make a key for (a folder under k8s/clusters/)",
        "force": "replace an existing key; the old one is archived, never deleted",
    },
    positional=[],
)
@user_errors
def generate(c: Context, cluster: str | None = None, force: bool = False) -> None:
    """Make the cluster's age key (0600, outside git) and point its .sops.yaml rule at it."""
    cluster = required(cluster, "cluster")
    settings = config(c)
    done = lib.generate(settings.root, settings.key_dir, cluster, force=force)
    if done.archived:
        print(f"old key archived to {done.archived}")
    print(f"cluster {cluster}: public key {done.key.public}")
    print(f"private key: {done.key.path} (0600; back it up, never commit it)")
    print(".sops.yaml rule " + ("updated" if done.config_changed else "already up to date"))
    if done.stale:
        print(f"{len(done.stale)} file(s) are not encrypted to this key yet, e.g. {done.stale[0]}")
        if done.archived:
            rekey = f"invoke secrets.rekey --cluster {cluster}"
            print(f"re-key them with the old key: SOPS_AGE_KEY_FILE={done.archived} {rekey}")
        else:
            rekey = f"invoke secrets.rekey --cluster {cluster}"
            print(f"if you hold their key: SOPS_AGE_KEY_FILE=<that key file> {rekey}")
            print(f"otherwise write placeholders for them: invoke secrets.scaffold --cluster {cluster}")


@task(help={"cluster": "only this cluster (default: every cluster under k8s/clusters/)"})
@user_errors
def show(c: Context, cluster: str | None = None) -> None:
    """Print each cluster's public key and where its private key lives (never the key itself)."""
    settings = config(c)
    for info in lib.show(settings.root, settings.key_dir, cluster):
        print(f"{info.cluster}:")
        print(f"  public key:   {info.public or '-'}")
        print(f"  private key:  {info.key_file}{'' if info.public else ' (missing)'}")
        print(f"  .sops.yaml:   {', '.join(info.rule_recipients) or 'no rule'}")
        if info.override:
            print(f"  override:     {info.override}")
        if info.problem:
            print(f"  problem:      {info.problem}")


@task(
    help={
        "cluster": "cluster whose key to rotate",
        "check": "print the plan (and the state of an interrupted rotation); change nothing",
        "resume": "continue an interrupted rotation from its journal",
        "offline": "skip the two steps that put keys into the cluster",
    },
    positional=[],
    auto_shortflags=False,  # --check would otherwise take -h, which must stay --help
)
@user_errors
def rotate(
    c: Context, cluster: str | None = None, check: bool = False, resume: bool = False, offline: bool = False
) -> None:
    """Rotate the cluster's age key: new key, re-encrypt every file, retire the old key (journaled)."""
    cluster = required(cluster, "cluster")
    settings = config(c)
    rotation = Rotation(settings.root, settings.key_dir, cluster, offline=offline)
    if check:
        print("\n".join(rotation.plan()))
        return
    rotation.run(resume=resume)
