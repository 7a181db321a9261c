"""Throw-away repositories for the key, secret and rotation tests: real sops, keys made at test time."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from fluxops.secrets import keys, keystore
from fluxops.secrets.sops import KeySource, Sops

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = ("lab", "phx")
Completed = subprocess.CompletedProcess[str]

KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
# secrets of this phase
namespace: traefik
resources:
  - middleware.yaml
"""

INVOKE_YAML = """\
fluxops:
  inventory: inventory/hosts.yaml
  key_dir: {key_dir}
  sandbox:
    inventory: inventory/sandbox.yaml
    dir: .sandbox
"""


def make_repo(root: Path, key_dir: Path, clusters: tuple[str, ...] = CLUSTERS) -> Path:
    """A minimal repository: tasks.py, invoke.yaml and an infrastructure-config kustomization per cluster."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tasks.py").write_text((REPO / "tasks.py").read_text())
    (root / "invoke.yaml").write_text(INVOKE_YAML.format(key_dir=key_dir))
    for cluster in clusters:
        folder = root / "k8s" / "clusters" / cluster / "infrastructure-config"
        folder.mkdir(parents=True)
        (folder / "kustomization.yaml").write_text(KUSTOMIZATION)
        (folder / "middleware.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mw\n")
    return root


def secret_yaml(name: str, namespace: str = "default", **values: str) -> str:
    """A plaintext Secret manifest with stringData ``values``."""
    body = "".join(f"  {k}: {v}\n" for k, v in values.items())
    head = f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
    return f"{head}stringData:\n{body}"


def write_encrypted(root: Path, rel: str, plaintext: str) -> Path:
    """Encrypt ``plaintext`` with the rule of ``rel`` and write it there."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Sops(root).encrypt_text(plaintext, path))
    return path


def decrypts_with(root: Path, path: Path, key_file: Path, cluster: str = "lab") -> bool:
    """True if the key in ``key_file`` alone decrypts ``path`` (no ~/.config/sops/age/keys.txt)."""
    with tempfile.TemporaryDirectory() as empty:
        key = KeySource.store_file(cluster, key_file, empty_home=Path(empty))
        return Sops(root).can_decrypt(path, key)


def key_secret(path: Path) -> str:
    """The AGE-SECRET-KEY line of a key file (to prove it never shows up anywhere)."""
    return next(line for line in path.read_text().splitlines() if line.startswith(keystore.SECRET_PREFIX))


def setup_cluster_keys(root: Path, key_dir: Path, clusters: tuple[str, ...] = CLUSTERS) -> dict[str, Path]:
    """A key per cluster and its .sops.yaml rule; returns the key files."""
    return {c: keys.generate(root, key_dir, c).key.path for c in clusters}


def _run_module(module: str, root: Path, args: tuple[str, ...], env: dict[str, str] | None) -> Completed:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_invoke(root: Path, *args: str, env: dict[str, str] | None = None) -> Completed:
    """``invoke ARGS`` in ``root`` (a fresh process), with fluxops importable."""
    return _run_module("invoke", root, args, env)


def run_crashing(root: Path, *args: str, env: dict[str, str] | None = None) -> Completed:
    """Like ``run_invoke``, through ``tests.unit.rotation_crasher`` (a rotation that SIGKILLs itself)."""
    return _run_module("tests.unit.rotation_crasher", root, args, env)
