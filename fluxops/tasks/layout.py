"""invoke layout.*: validate the GitOps tree, show its phase graph, scaffold a cluster, audit duplicates."""

from __future__ import annotations

from pathlib import Path

from invoke import Context, Exit

from fluxops.errors import LayoutError
from fluxops.progname import command
from fluxops.tasks.common import number, print_json, project_root, task, usage, user_errors


@task(
    help={
        "cluster": "validate only this cluster (default: every cluster of the repository)",
        "json": "print the findings as JSON instead of the grouped report",
        "no_cache": "rebuild every kustomization instead of using .fluxops/cache",
    }
)
@user_errors
def validate(c: Context, cluster: str | None = None, json_: bool = False, no_cache: bool = False) -> None:
    """Check the whole Flux tree offline: YAML, kustomize builds, schemas, phases, CRD order, secrets."""
    from fluxops import progress
    from fluxops.layout import report
    from fluxops.layout.validate import validate as run

    with progress.shown("validating: kustomize builds") as built:
        tree, findings = run(project_root(c), cluster, cache=not no_cache, progress=built)
    print(report.as_json(tree, findings) if json_ else report.text(tree, findings))
    if findings.errors:
        raise Exit(code=1)


@task(
    help={
        "cluster": "the cluster to show (default: every cluster)",
        "dot": "also write the graph as Graphviz DOT to this file ('-' for stdout instead of the text; "
        "with several clusters, one file per cluster named FILE with -CLUSTER before the suffix)",
        "png": "also render the graph to this PNG file with Graphviz (one file per cluster, as --dot)",
        "svg": "also render the graph to this SVG file with Graphviz (one file per cluster, as --dot)",
        "json": "print each cluster's phases in apply order as JSON instead of the drawing (files given "
        "with --dot/--png/--svg are still written)",
    }
)
@user_errors
def tree(
    c: Context,
    cluster: str | None = None,
    dot: str | None = None,
    png: str | None = None,
    svg: str | None = None,
    json_: bool = False,
) -> None:
    """Show a cluster's phases level by level in apply order: markers, what each installs and waits for."""
    import os
    import sys

    from rich.console import Console

    from fluxops.layout import dot as graph
    from fluxops.layout import tree_text
    from fluxops.layout.apply_order import as_json
    from fluxops.layout.tree import load

    if "-" in (png, svg):
        raise LayoutError("--png and --svg write files: give a file name ('-' for stdout is --dot's alone)")
    if json_ and dot == "-":
        raise usage("--json and --dot - both print to stdout: give --dot a file name")
    loaded = load(project_root(c), cluster)
    source_out = dot == "-"
    console = Console(highlight=False) if sys.stdout.isatty() and not os.environ.get("NO_COLOR") else None
    files = [(fmt, Path(v)) for fmt, v in (("dot", dot), ("png", png), ("svg", svg)) if v and v != "-"]
    many = len(loaded.clusters) > 1
    for fmt, path in files:  # a bad target fails before anything is printed or written
        for name in loaded.clusters:
            graph.check_target(fmt, graph.per_cluster(path, name, many))
    for n, (name, item) in enumerate(loaded.clusters.items()):
        if source_out:
            print(graph.dot(item), end="")
        elif not json_:
            print("\n" * bool(n), end="")
            if console is not None:
                console.print(tree_text.styled(item), soft_wrap=True)
            else:
                print(tree_text.text(item))
        for fmt, path in files:
            target = graph.per_cluster(path, name, many)
            graph.write(item, fmt, target)
            print(f"  wrote {target}", file=sys.stderr if source_out or json_ else sys.stdout)
    if json_:
        print_json({"clusters": [as_json(item) for item in loaded.clusters.values()]})
    elif not source_out:
        print(tree_text.LEGEND)


@task(
    auto_shortflags=False,  # long flags only: -c and -n mean --cluster and --namespace elsewhere
    iterable=["address", "lb_ip", "node", "owner_id", "domain", "storage_pool"],
    help={
        "name": "the new cluster's name (required; a DNS label: lowercase letters, digits, '-')",
        "like": "the existing cluster to copy the overlays from (default: lab)",
        "address": "the new cluster's MetalLB pool: an address, CIDR or range (repeat or comma-separate "
        "for several entries)",
        "lb_ip": "a LoadBalancer IP: NEW when the template has one, OLD=NEW for each of several (repeatable)",
        "node": "a node name for the template's node pins: NEW or OLD=NEW (repeatable)",
        "owner_id": "the external-dns owner id (txtOwnerId): NEW or OLD=NEW",
        "domain": "an external-dns domain filter: NEW or OLD=NEW (repeatable)",
        "storage_pool": "a storage pool (StorageClass poolname/volgroup): NEW or OLD=NEW (repeatable)",
        "check": "show what would be written, and each site value set, without writing anything",
    },
)
@user_errors
def new_cluster(
    c: Context,
    name: str | None = None,
    like: str = "lab",
    address: list[str] | None = None,
    lb_ip: list[str] | None = None,
    node: list[str] | None = None,
    owner_id: list[str] | None = None,
    domain: list[str] | None = None,
    storage_pool: list[str] | None = None,
    check: bool = False,
) -> None:
    """Scaffold k8s/clusters/NAME from another cluster with its own site values (docs/site-values.md).

    Every site value of the template (pool, LoadBalancer IPs, node pins, external-dns owner id and
    domains, storage pools) needs the new cluster's value: from the options, else asked on a
    terminal (the template's value shown, never a default); without a terminal a missing one stops
    the task with the list of options to give, and nothing is written.
    """
    import sys

    from fluxops.layout.scaffold import new_cluster as scaffold
    from fluxops.layout.site_answers import ask_terminal
    from fluxops.tasks.common import required

    name = required(name, "name")
    values = {
        "lb_ips": lb_ip or [],
        "node_names": node or [],
        "external_dns_owner": owner_id or [],
        "domains": domain or [],
        "storage_pools": storage_pool or [],
    }
    result = scaffold(
        project_root(c),
        name,
        like=like,
        address=address or None,
        values=values,
        ask=ask_terminal if sys.stdin.isatty() else None,
        require_all=True,
        check=check,
    )
    verb = "would write" if check else "wrote"
    for path in result.written:
        print(f"  {verb} {path}")
    for change in result.changes:
        print(f"  set {change}")
    for note in result.notes:
        print(f"  note: {note}")
    if check:
        print(f"cluster {name} not written (--check)")
        return
    check_it = command(f"layout.validate --cluster {name}")
    print(f"cluster {name} scaffolded from {like}; check it with: {check_it}")


@task(
    help={
        "apply": "move each duplicate to k8s/base with per-cluster patches, then re-check that every "
        "cluster builds to the same objects (changes are undone if not)",
        "threshold": "how alike two definitions must be to count as duplicates, more than 0 and at most 1 "
        "(default 0.8)",
        "json": "print the duplicates (and what --apply moved) as JSON instead of text",
    }
)
@user_errors
def audit(c: Context, apply: bool = False, threshold: str = "0.8", json_: bool = False) -> None:
    """Find resources defined in more than one cluster overlay; propose (or --apply) moving them to base."""
    from fluxops.layout import audit as run

    alike = number(threshold, "threshold", 0, 1)
    root = project_root(c)
    dups = run.find_duplicates(root, threshold=alike)
    moved = run.apply(root, dups) if apply and dups else []
    if json_:
        print_json(
            {
                "duplicates": [
                    {
                        "kind": d.kind,
                        "name": d.name,
                        "namespace": d.namespace,
                        "similarity": round(d.similarity, 3),
                        "clusters": [m.cluster for m in d.members],
                        "files": [m.doc.file for m in d.members],
                        "base_file": d.base_file,
                    }
                    for d in dups
                ],
                "applied": moved if apply else None,
            }
        )
        return
    print(run.describe(dups))
    for line in moved:
        print(f"  {line}")
    if moved:
        print("applied: every cluster builds to the same objects as before")
