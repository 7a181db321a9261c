"""The rehearsal on copies of this repository's tree (keys made at test time, its secrets re-created for
them): the shipped tree rehearses green, and planted mistakes fail in the right phase with Flux's words."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from invoke import Collection, Program

from fluxops.defaults import DEFAULTS
from fluxops.errors import FluxopsError
from fluxops.masking import Secret
from fluxops.secrets import keys, repository
from fluxops.sim import rehearse_run
from fluxops.sim.rehearse import Rehearsal, rehearse
from fluxops.tasks import rehearse as rehearse_task
from tests.unit.sim_testing import commit, git

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A copy of the repository's tree (k8s/, .sops.yaml, invoke.yaml) with a key per cluster, its secrets
    re-created for those keys (placeholder values), committed; and the key store."""
    base = tmp_path_factory.mktemp("rehearse")
    root, key_dir = base / "repo", base / "keys"
    tracked = subprocess.run(["git", "ls-files", "k8s", ".sops.yaml", "invoke.yaml"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    for rel in tracked:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    for cluster in ("lab", "phx"):
        keys.generate(root, key_dir, cluster)
        assert {s.state for s in repository.scaffold(root, key_dir, cluster)} == {"written"}
    commit(root, {}, "the shipped tree, secrets for test keys")
    return root, key_dir


@pytest.fixture
def repo(template: tuple[Path, Path], tmp_path: Path) -> Path:
    """A fresh copy of the template to plant a mistake in."""
    root = tmp_path / "repo"
    shutil.copytree(template[0], root, symlinks=True)
    return root


def run(root: Path, key_dir: Path | None, cluster: str = "lab") -> Rehearsal:
    identities = Secret((key_dir / f"{cluster}.agekey").read_text()) if key_dir else None
    return rehearse(root, cluster, identities=identities, key_label="test key")


def phase(result: Rehearsal, name: str):
    return next(p for p in result.phases if p.name == name)


def first_failure(result: Rehearsal, name: str):
    return next(e for e in result.events if e.name == name and e.what == "failed")


@pytest.mark.parametrize("cluster", ["lab", "phx"])
def test_the_shipped_tree_rehearses_green(template: tuple[Path, Path], cluster: str) -> None:
    result = run(template[0], template[1], cluster)
    assert result.ok
    assert [p.name for p in result.phases] == ["flux-system", "crds", "infrastructure", "storage",
                                               "infrastructure-config", "apps"]  # fmt: skip
    assert all(p.ready and p.attempts == 1 for p in result.phases)
    # Flux's pace: a dependent phase is retried 30 s after it found its dependency not Ready
    assert {p.name: (p.started, p.ready_at) for p in result.phases} == {
        "flux-system": (0, 0), "crds": (0, 0), "infrastructure": (30, 35), "storage": (30, 35),
        "infrastructure-config": (60, 60), "apps": (90, 90),
    }  # fmt: skip
    assert phase(result, "infrastructure").tick == phase(result, "storage").tick  # reconciled in parallel
    assert result.releases and all(r.ready for r in result.releases)
    head = git(template[0], "rev-parse", "HEAD")
    assert result.snapshot.head == head and result.snapshot.changed == []
    assert phase(result, "apps").message == f"Applied revision: main@sha1:{result.snapshot.commit}"


def test_no_key_fails_the_first_phase_with_sops_files_at_decryption(template: tuple[Path, Path]) -> None:
    result = run(template[0], None)
    assert not result.ok
    infrastructure = phase(result, "infrastructure")
    assert (infrastructure.reason, infrastructure.message, infrastructure.stage) == (
        "BuildFailed",
        'secrets "sops-age" not found',
        "decryption",
    )
    assert phase(result, "crds").ready and phase(result, "storage").ready  # no sops files there
    later = phase(result, "infrastructure-config")
    assert (later.reason, later.message) == (
        "DependencyNotReady",
        "dependency 'flux-system/infrastructure' is not ready",
    )


def test_the_key_missing_from_the_store_is_an_error_that_points_at_no_key(
    template: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(FluxopsError, match=r"no age key for cluster lab .* --no-key"):
        rehearse_run.run(template[0], "lab", tmp_path / "empty-store")


def test_custom_resource_whose_crd_phase_is_no_dependency_fails_then_succeeds_on_retry(
    repo: Path, template
) -> None:
    apps = repo / "k8s/clusters/lab/apps.yaml"
    apps.write_text(apps.read_text().replace("  dependsOn:\n    - name: infrastructure-config\n", ""))
    result = run(repo, template[1])  # uncommitted: the rehearsal reads the working tree
    failure = first_failure(result, "apps")
    assert failure.time == 0 and failure.stage == "validation"
    assert failure.message.startswith(
        "IngressRoute/adguard/adguard dry-run failed: "
        'no matches for kind "IngressRoute" in version "traefik.io/v1alpha1"'
    )
    assert phase(result, "apps").ready and phase(result, "apps").ready_at == 60  # its retryInterval: 1m
    assert result.ok and result.snapshot.changed == ["k8s/clusters/lab/apps.yaml"]


def test_a_file_encrypted_to_the_other_clusters_key(repo: Path, template) -> None:
    lab = repo / "k8s/clusters/lab/infrastructure-config/traefik-config/cloudflare-secret.sops.yaml"
    shutil.copy2(
        repo / "k8s/clusters/phx/infrastructure-config/traefik-config/cloudflare-secret.sops.yaml", lab
    )
    result = run(repo, template[1])
    assert not result.ok
    config = phase(result, "infrastructure-config")
    assert (config.reason, config.stage) == ("BuildFailed", "decryption")
    assert config.message.startswith("decryption failed for 'Secret.v1.[noGrp]/")
    assert (
        "cannot get sops data key: Failed to get the data key required to decrypt the SOPS file."
        in config.message
    )
    phx_public = keys.keystore.public_key(template[1] / "phx.agekey")
    assert phx_public in config.message
    assert phase(result, "infrastructure").ready and not phase(result, "apps").ready


def test_a_broken_overlay_fails_its_phase_at_build(repo: Path, template) -> None:
    storage = repo / "k8s/clusters/lab/storage/kustomization.yaml"
    storage.write_text(
        storage.read_text().replace(
            "  - storage-classes.yaml\n", "  - storage-classes.yaml\n  - zfs-pools.yaml\n"
        )
    )
    result = run(repo, template[1])
    broken = phase(result, "storage")
    assert (broken.reason, broken.stage) == ("BuildFailed", "build")
    assert broken.message.startswith("kustomize build failed: ") and "zfs-pools.yaml" in broken.message
    assert phase(result, "infrastructure").ready  # its parallel sibling is not held up
    assert not result.ok and [p.name for p in result.failed_waiting] == ["storage", "infrastructure-config"]


def test_a_custom_resource_violating_its_crd_schema(repo: Path, template) -> None:
    pools = repo / "k8s/clusters/lab/infrastructure-config/metallb-config.yaml"
    pools.write_text(
        pools.read_text().replace(
            "  addresses:\n    - 192.168.8.200-192.168.8.220\n", "  addresses: 192.168.8.200-192.168.8.220\n"
        )
    )
    result = run(repo, template[1])
    config = phase(result, "infrastructure-config")
    assert (config.reason, config.stage) == ("ReconciliationFailed", "validation")
    assert config.message == (
        "IPAddressPool/metallb-system/lan dry-run failed (Invalid): "
        'IPAddressPool.metallb.io "lan" is invalid: '
        'spec.addresses: Invalid value: "string": spec.addresses in body must be of type array: "string"'
    )


def test_a_substitution_variable_with_no_value_fails_a_wait_false_phase_without_failing_the_rehearsal(
    repo: Path, template
) -> None:
    apps = repo / "k8s/clusters/lab/apps.yaml"
    apps.write_text(apps.read_text() + "  postBuild:\n    substitute:\n      CLUSTER: lab\n")
    extra = repo / "k8s/clusters/lab/apps/adguard/settings.yaml"
    extra.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: adguard-${SETTINGS_SUFFIX}\n"
                     "  namespace: adguard\ndata:\n  cluster: ${CLUSTER}\n")  # fmt: skip
    kustomization = repo / "k8s/clusters/lab/apps/adguard/kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "  - settings.yaml\n")
    result = run(repo, template[1])
    apps_phase = phase(result, "apps")
    assert (apps_phase.reason, apps_phase.stage) == ("ReconciliationFailed", "validation")
    assert apps_phase.message.startswith(
        'ConfigMap/adguard/adguard- dry-run failed (Invalid): ConfigMap "adguard-" is invalid: '
        "metadata.name: "
        'Invalid value: "adguard-": a lowercase RFC 1123 subdomain'
    )
    assert result.ok  # apps has wait: false: reported, and the rehearsal passes


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
    assert "▶ infrastructure ∥ storage  (in parallel)" in out
    assert "rehearsal passed: every wait: true phase is Ready" in out
    assert "charts are not rendered" in out and "\x1b[" not in out
    code, out = invoke(repo, key_dir, "-c", "lab", "--no-key")
    assert code == 1
    assert 'infrastructure         ✖ BuildFailed at decryption: secrets "sops-age" not found' in out
    assert "rehearsal failed: infrastructure, infrastructure-config did not become Ready" in out


def test_the_task_json_document(template) -> None:
    root, key_dir = template
    code, out = invoke(root, key_dir, "--cluster", "phx", "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"] is True and document["charts_rendered"] is False
    assert document["source"]["revision"].startswith("main@sha1:")
    assert [p["name"] for p in document["phases"]][:2] == ["flux-system", "crds"]
    assert {e["what"] for e in document["events"]} >= {"started", "ready", "waiting"}
