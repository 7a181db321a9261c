"""The rehearsal on copies of this repository's tree (keys made at test time, its secrets re-created for
them): the shipped tree rehearses green, and planted mistakes fail in the right phase with Flux's words."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from invoke import Collection, Program

from fluxops.defaults import DEFAULTS
from fluxops.errors import FluxopsError
from fluxops.masking import Secret
from fluxops.secrets import keys
from fluxops.sim import rehearse_run
from fluxops.sim.rehearse import Phase, Rehearsal, rehearse
from fluxops.sim.results import Event
from fluxops.tasks import rehearse as rehearse_task
from tests.unit.bootstrap_testing import make_template
from tests.unit.sim_testing import commit, git

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the repository's tree as it is in the working tree (k8s/, .sops.yaml, invoke.yaml) with a
    key per cluster, its secrets re-created for those keys (placeholder values), committed; and the key
    store."""
    return make_template(tmp_path_factory.mktemp("rehearse"))


@pytest.fixture
def repo(template: tuple[Path, Path], tmp_path: Path) -> Path:
    """A fresh copy of the template to plant a mistake in."""
    root = tmp_path / "repo"
    shutil.copytree(template[0], root, symlinks=True)
    return root


def run(root: Path, key_dir: Path | None, cluster: str = "lab") -> Rehearsal:
    identities = Secret((key_dir / f"{cluster}.agekey").read_text()) if key_dir else None
    return rehearse(root, cluster, identities=identities, key_label="test key")


def phase(result: Rehearsal, name: str) -> Phase:
    return next(p for p in result.phases if p.name == name)


def first_failure(result: Rehearsal, name: str) -> Event:
    return next(e for e in result.events if e.name == name and e.what == "failed")


def plant(root: Path, files: dict[str, str], **spec: object) -> None:
    """A new top-level phase ``early`` in lab (listed in the cluster's kustomization.yaml, uncommitted),
    reading ``k8s/clusters/lab/early`` where ``files`` go; ``spec`` adds to its Kustomization spec."""
    body = {"interval": "30m", "retryInterval": "1m", "timeout": "2m", "path": "./k8s/clusters/lab/early",
            "prune": True, "wait": True,
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}  # fmt: skip
    body.update(spec)
    ks = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
          "metadata": {"name": "early", "namespace": "flux-system"}, "spec": body}  # fmt: skip
    lab = root / "k8s/clusters/lab"
    (lab / "early.yaml").write_text(yaml.safe_dump(ks, sort_keys=False))
    index = yaml.safe_load((lab / "kustomization.yaml").read_text())
    index["resources"].append("early.yaml")
    (lab / "kustomization.yaml").write_text(yaml.safe_dump(index, sort_keys=False))
    for rel, text in files.items():
        (lab / "early" / rel).parent.mkdir(parents=True, exist_ok=True)
        (lab / "early" / rel).write_text(text)


EARLY_NS = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: early\n"
POOL = ("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: early\n  namespace: early\n"
        "spec:\n  addresses:\n    - 10.99.0.0/24\n")  # fmt: skip
AFTER_CRDS = {"dependsOn": [{"name": "crds"}]}


@pytest.mark.parametrize("cluster", ["lab", "phx"])
def test_the_shipped_tree_rehearses_green(template: tuple[Path, Path], cluster: str) -> None:
    result = run(template[0], template[1], cluster)
    assert result.ok, [(p.name, p.reason, p.message) for p in result.phases if not p.ready]
    assert result.phases[0].name == "flux-system" and result.phases[0].blocks
    assert all(p.ready for p in result.phases)
    assert result.releases and all(r.ready for r in result.releases)
    ready_at = {p.name: p.ready_at for p in result.phases}
    for p in result.phases:  # Flux's order: nothing starts before what it depends on is Ready
        for dep in p.depends_on:
            assert p.started is not None and ready_at[dep] is not None and p.started >= ready_at[dep], p.name
    ticks = [p.tick for p in result.phases]
    assert len(ticks) > len(set(ticks))  # some phases were reconciled in parallel
    head = git(template[0], "rev-parse", "HEAD")
    assert result.snapshot.head == head and result.snapshot.changed == []
    assert {p.message for p in result.phases} == {f"Applied revision: main@sha1:{result.snapshot.commit}"}


def test_no_key_fails_the_phases_with_sops_files_at_decryption(template: tuple[Path, Path]) -> None:
    result = run(template[0], None)
    assert not result.ok
    decrypting = [p for p in result.phases if p.stage == "decryption"]
    assert decrypting and all(
        (p.reason, p.message) == ("BuildFailed", 'secrets "sops-age" not found') for p in decrypting
    )
    first = min(e.time for e in result.events if e.stage == "decryption")
    assert (
        all(p.started is not None and p.started >= 0 for p in decrypting)
        and first < result.end - result.start
    )
    assert phase(result, "crds").ready  # no decryption there


def test_the_key_missing_from_the_store_is_an_error_that_points_at_no_key(
    template: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(FluxopsError, match=r"no age key for cluster lab .* --no-key"):
        rehearse_run.run(template[0], "lab", tmp_path / "empty-store")


def test_custom_resource_whose_crd_phase_is_no_dependency_fails_then_succeeds_on_retry(
    repo: Path, template
) -> None:
    plant(repo, {"all.yaml": EARLY_NS + "---\n" + POOL})  # no dependsOn: applied alongside crds
    result = run(repo, template[1])  # uncommitted: the rehearsal reads the working tree
    failure = first_failure(result, "early")
    assert failure.time == 0 and failure.stage == "validation"
    assert failure.message.splitlines() == [
        "IPAddressPool/early/early dry-run failed: "
        'no matches for kind "IPAddressPool" in version "metallb.io/v1beta1"',
        "Namespace/early created",  # Flux appends what the apply changed before it failed
    ]
    assert phase(result, "early").ready and phase(result, "early").ready_at == 60  # its retryInterval: 1m
    assert result.ok and "k8s/clusters/lab/early.yaml" in result.snapshot.changed


def test_a_file_encrypted_to_the_other_clusters_key(repo: Path, template) -> None:
    phx_secret = next((repo / "k8s/clusters/phx").rglob("*.sops.yaml"))
    plant(repo, {"all.yaml": EARLY_NS, "secret.sops.yaml": phx_secret.read_text()},
          decryption={"provider": "sops", "secretRef": {"name": "sops-age"}},
          targetNamespace="early")  # fmt: skip
    result = run(repo, template[1])
    early = phase(result, "early")
    assert (early.reason, early.stage, early.blocks) == ("BuildFailed", "decryption", True)
    assert early.message.startswith("decryption failed for 'Secret.v1.[noGrp]/")
    assert (
        "cannot get sops data key: Failed to get the data key required to decrypt the SOPS file."
        in early.message
    )
    assert keys.keystore.public_key(template[1] / "phx.agekey") in early.message
    assert not result.ok and [p.name for p in result.failed_blocking] == ["early"]


def test_a_broken_overlay_fails_its_phase_at_build(repo: Path, template) -> None:
    plant(
        repo,
        {
            "kustomization.yaml": "resources:\n  - namespace.yaml\n  - pools.yaml\n",
            "namespace.yaml": EARLY_NS,
        },
    )
    result = run(repo, template[1])
    early = phase(result, "early")
    assert (early.reason, early.stage) == ("BuildFailed", "build")
    assert early.message.startswith("kustomize build failed: ") and "pools.yaml" in early.message
    assert not result.ok and [p.name for p in result.failed_blocking] == ["early"]


def test_a_custom_resource_violating_its_crd_schema(repo: Path, template) -> None:
    scalar = POOL.replace("addresses:\n    - 10.99.0.0/24", "addresses: 10.99.0.0/24")
    plant(repo, {"all.yaml": EARLY_NS + "---\n" + scalar}, **AFTER_CRDS)
    result = run(repo, template[1])
    early = phase(result, "early")
    assert (early.reason, early.stage) == ("ReconciliationFailed", "validation")
    assert early.message == (
        "IPAddressPool/early/early dry-run failed (Invalid): "
        'IPAddressPool.metallb.io "early" is invalid: '
        'spec.addresses: Invalid value: "string": spec.addresses in body must be of type array: "string"'
    )


def test_a_substitution_variable_with_no_value_fails_a_phase_nothing_waits_for(repo: Path, template) -> None:
    settings = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-${SUFFIX}\n  namespace: early\n"
        "data:\n  cluster: ${CLUSTER}\n"
    )
    plant(repo, {"all.yaml": EARLY_NS + "---\n" + settings}, wait=False,
          postBuild={"substitute": {"CLUSTER": "lab"}})  # fmt: skip
    result = run(repo, template[1])
    early = phase(result, "early")
    assert (early.reason, early.stage, early.blocks) == ("ReconciliationFailed", "validation", False)
    assert early.message.startswith(
        'ConfigMap/early/settings- dry-run failed (Invalid): ConfigMap "settings-" is invalid: '
        'metadata.name: Invalid value: "settings-": a lowercase RFC 1123 subdomain'
    )
    assert result.ok  # wait: false and nothing depends on it: reported, the rehearsal passes


def test_the_old_lab_tree_deadlocks_at_infrastructure_on_a_service_only_apps_creates(tmp_path: Path) -> None:
    """helm-controller's wait: the AdGuard webhook's pods cannot reach adguard.adguard.svc, so the
    external-dns release times out; infrastructure (wait: true) never turns Ready and apps, which
    would create that Service, is never applied - the deadlock layout.validate reports offline."""
    root = tmp_path / "old-lab"
    shutil.copytree(REPO / "tests/reference_fixtures/old-lab", root)
    commit(root, {}, "the lab tree before the deadlock was fixed")
    result = run(root, None)
    assert not result.ok
    release = first_failure(result, "external-dns")
    assert release.reason in ("SourceNotReady", "InstallFailed")
    installs = [e for e in result.events if e.name == "external-dns" and e.reason == "InstallFailed"]
    assert installs and "context deadline exceeded" in installs[0].message
    assert "Service adguard/adguard (http://adguard.adguard.svc.cluster.local:3000)" in installs[0].message
    infrastructure = first_failure(result, "infrastructure")
    assert infrastructure.reason == "HealthCheckFailed" and "HelmRelease/flux-system/external-dns" in (
        infrastructure.message
    )
    assert phase(result, "apps").message == "dependency 'flux-system/infrastructure' is not ready"


def invoke(root: Path, key_dir: Path, *argv: str) -> tuple[int, str]:
    """``invoke rehearse ...`` in ``root`` with the store ``key_dir``; (exit code, stdout)."""
    import contextlib
    import io

    ns = Collection()
    ns.add_task(rehearse_task.rehearse)
    ns.configure({"fluxops": {**copy.deepcopy(DEFAULTS), "key_dir": str(key_dir)}})
    program = Program(namespace=ns, binary="invoke")
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.chdir(root):
        try:
            program.run(["invoke", "rehearse", *argv], exit=True)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


def test_the_task_prints_a_plain_timeline_when_piped_and_exits_by_the_wait_phases(
    template, repo: Path
) -> None:
    root, key_dir = template
    code, out = invoke(root, key_dir, "-c", "lab")
    assert code == 0, out
    assert "is served from this working tree: main@sha1:" in out
    assert "(in parallel)" in out and " ✔ Applied revision: main@sha1:" in out
    assert "rehearsal passed: every blocking phase is Ready" in out
    assert "charts are not rendered" in out and "\x1b[" not in out
    code, out = invoke(repo, key_dir, "-c", "lab", "--no-key")
    assert code == 1
    assert ' ✖ BuildFailed at decryption: secrets "sops-age" not found' in out
    assert "rehearsal failed: " in out


def test_the_task_json_document(template) -> None:
    root, key_dir = template
    code, out = invoke(root, key_dir, "--cluster", "phx", "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"] is True and document["charts_rendered"] is False
    assert document["source"]["revision"].startswith("main@sha1:")
    assert [p["name"] for p in document["phases"]][:2] == ["flux-system", "crds"]
    assert {e["what"] for e in document["events"]} >= {"started", "ready", "waiting"}
