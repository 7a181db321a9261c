"""source-controller as simulated: GitRepository fetched with real git."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxops.sim.validation import ApiError
from tests.unit.sim_testing import (
    URL,
    commit,
    git_repository,
    kustomization,
    manifests,
    node,
    of,
    ready,
    settle,
)

CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "c", "namespace": "default"},
    "data": {"v": "1"},
}


def test_git_repository_url_must_be_http_https_or_ssh_as_fluxs_crd_says(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit(repo, {"a/c.yaml": manifests(CM)})
    sim, _ = node(tmp_path, repo)
    local = git_repository()
    local["spec"]["url"] = f"file://{repo}"
    with pytest.raises(ApiError, match=r"spec\.url: Invalid value: \"file://"):
        sim.apply([local])


def test_a_new_commit_is_fetched_at_the_next_interval_and_its_kustomizations_follow(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = commit(repo, {"a/c.yaml": manifests(CM)})
    sim, clock = node(tmp_path, repo)
    sim.apply([git_repository("2m"), kustomization("a", "./a", interval="1h")])
    settle(sim, clock, 5)
    second = commit(repo, {"a/c.yaml": manifests({**CM, "data": {"v": "2"}})})
    events = settle(sim, clock, 125)
    fetched = [e for e in of(events, "flux-system", "ready") if second in e.message]
    assert round(fetched[0].time) == 115  # 120 s after the first fetch at 0 (5 s ago)
    assert ready(sim, "a") == ("True", "ReconciliationSucceeded", f"Applied revision: main@sha1:{second}")
    assert first != second and sim.read().get("", "ConfigMap", "default", "c")["data"] == {"v": "2"}


def test_a_missing_branch_is_git_operation_failed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit(repo, {"a/c.yaml": manifests(CM)})
    sim, clock = node(tmp_path, repo)
    source = git_repository()
    source["spec"]["ref"] = {"branch": "nope"}
    sim.apply([source])
    settle(sim, clock, 5)
    expected = f"failed to checkout and determine revision: unable to clone '{URL}': "
    expected += 'couldn\'t find remote ref "refs/heads/nope"'
    assert ready(sim, "flux-system", "GitRepository") == ("False", "GitOperationFailed", expected)


def test_git_runs_only_the_allowed_protocols_so_nothing_leaves_the_machine(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit(repo, {"a/c.yaml": manifests(CM)})
    sim, clock = node(tmp_path, repo, git_rewrites={})  # no rewrite: the URL is ssh:// to a host
    sim.apply([git_repository()])
    settle(sim, clock, 5)
    status, reason, message = ready(sim, "flux-system", "GitRepository")
    assert (status, reason) == ("False", "GitOperationFailed")
    assert "transport 'ssh' not allowed" in message


def test_a_tag_ref_is_revision_tag_at_sha1(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    sha = commit(repo, {"a/c.yaml": manifests(CM)})
    from tests.unit.sim_testing import git

    git(repo, "tag", "v1.0.0")
    sim, clock = node(tmp_path, repo)
    source = git_repository()
    source["spec"]["ref"] = {"tag": "v1.0.0"}
    sim.apply([source])
    settle(sim, clock, 5)
    assert (
        ready(sim, "flux-system", "GitRepository")[2] == f"stored artifact for revision 'v1.0.0@sha1:{sha}'"
    )
