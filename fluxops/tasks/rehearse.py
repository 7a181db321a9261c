"""invoke rehearse: a cluster's phased reconcile on a simulated node, offline (fluxops.sim)."""

from __future__ import annotations

from invoke import Context, Exit

from fluxops.tasks.common import config, project_root, required, task, user_errors


@task(
    help={
        "cluster": "the cluster to rehearse (a cluster of the repository, e.g. lab)",
        "no_key": "rehearse without the cluster's age key: the node gets no sops-age Secret, as a cluster "
        "bootstrapped without it (shows where Flux would fail)",
        "json": "print the outcome (phases, HelmReleases, timeline) as one JSON document",
    }
)
@user_errors
def rehearse(c: Context, cluster: str | None = None, no_key: bool = False, json_: bool = False) -> None:
    """Reconcile a cluster's phases on a simulated k3s node with Flux, offline; exit 1 if one fails."""
    from fluxops.sim import rehearse_run

    root = project_root(c)
    ok = rehearse_run.run(root, required(cluster, "cluster"), config(c).key_dir, no_key=no_key, as_json=json_)
    if not ok:
        raise Exit(code=1)
