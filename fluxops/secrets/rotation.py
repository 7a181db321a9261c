"""Key rotation for one cluster, in seven journaled steps that survive a crash.

1. generate the new key (``<cluster>.pending.agekey``, 0600);
2. old + new key as recipients in ``.sops.yaml``; ``sops updatekeys -y`` every file;
3. both keys into the cluster's ``sops-age`` secret (unless offline);
4. ``.sops.yaml`` without the old key; ``sops rotate --rm-age OLD`` every file (a new data key);
5. verify: every file decrypts with the new key alone and not with the old one;
6. the new key alone into the cluster (unless offline);
7. archive the old key (0600); the pending key becomes ``<cluster>.agekey``.

``sops rotate`` alone never adds a recipient (sops#365, #901), hence step 2 before step 4. Every
step is idempotent over files: a file that already has the new recipient is skipped in step 2, a
file without the old recipient in step 4, so a crash between two files loses nothing. The journal
``<key_dir>/<cluster>.rotation.json`` (0600, written atomically) holds step states and public keys
only. At every moment each file is readable by the old key, the new key or both, and the operator
holds both until the old one is archived (still held, in the archive).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops import clusters
from fluxops.errors import FluxopsError, KeyStoreError, RotationError
from fluxops.files import atomic_write
from fluxops.secrets import keystore, rules
from fluxops.secrets.encrypted import file_recipients
from fluxops.secrets.sops import KeySource, Sops, parallel
from fluxops.secrets.walk import encrypted_files

JOURNAL_VERSION = 1
FAULT_AFTER_STEP = "FLUXOPS_FAULT_AFTER_STEP"  # test-only: N -> SIGKILL right after step N commits
FAULT_IN_STEP = "FLUXOPS_FAULT_IN_STEP"  # test-only: "N:K" -> SIGKILL after K files of step N (2 or 4)
PUSH_UNAVAILABLE = "skipped: cluster push is not available yet; pass --offline to silence"

STEPS: dict[int, str] = {
    1: "generate the new key (pending, 0600)",
    2: "make old and new key recipients in .sops.yaml and `sops updatekeys -y` every file",
    3: "put both keys in the cluster's sops-age secret (over SSH, stdin only)",
    4: "new data keys (`sops rotate`) with only the new key as recipient",
    5: "verify every file decrypts with the new key alone and not with the old one",
    6: "put the new key alone in the cluster's sops-age secret",
    7: "archive the old key (0600); the new key becomes the cluster's key",
}
ONLINE_STEPS = (3, 6)

Report = Callable[[str], None]


class PushUnavailable(FluxopsError):
    """Putting keys into a cluster is not possible (yet, or from here)."""


def push_keys(cluster: str, key_files: list[Path]) -> str:
    """Put the keys of ``key_files`` into the cluster's ``flux-system/sops-age`` secret (stdin only).

    The boundary the bootstrap work fills: read each key file, send it on stdin to
    ``kubectl create secret generic sops-age -n flux-system --from-file=<cluster>.agekey=/dev/stdin
    --dry-run=client -o yaml | kubectl apply -f -`` on a node of the cluster. Not available yet.
    """
    raise PushUnavailable(PUSH_UNAVAILABLE)


def _fault(step: int, files_done: int | None = None) -> None:
    """Test-only crash point: the process kills itself with SIGKILL (no cleanup, no journal update)."""
    if files_done is None:
        hit = os.environ.get(FAULT_AFTER_STEP) == str(step)
    else:
        hit = os.environ.get(FAULT_IN_STEP) == f"{step}:{files_done}"
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def journal_path(key_dir: Path, cluster: str) -> Path:
    """Where the cluster's rotation journal lives."""
    return Path(key_dir) / f"{cluster}.rotation.json"


@dataclass
class Journal:
    """The rotation's durable state: public keys and step states, never a private key."""

    path: Path
    cluster: str
    root: str
    old_public: str
    rule_before: list[str]
    new_public: str | None = None
    offline: bool = False
    started: str = field(default_factory=_now)
    finished: str | None = None
    steps: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Journal | None:
        """The journal at ``path``, or None if there is none."""
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RotationError(f"unreadable rotation journal {path}: {exc}", journal=str(path)) from None
        if raw.get("version") != JOURNAL_VERSION:
            raise RotationError(f"{path}: unknown journal version {raw.get('version')}", journal=str(path))
        return cls(
            path=Path(path),
            cluster=raw["cluster"],
            root=raw["root"],
            old_public=raw["old_public"],
            rule_before=list(raw.get("rule_before") or []),
            new_public=raw.get("new_public"),
            offline=bool(raw.get("offline")),
            started=raw.get("started") or _now(),
            finished=raw.get("finished"),
            steps=dict(raw.get("steps") or {}),
        )

    def save(self) -> None:
        """Write the journal atomically (0600)."""
        data: dict[str, Any] = {
            "version": JOURNAL_VERSION,
            "cluster": self.cluster,
            "root": self.root,
            "started": self.started,
            "finished": self.finished,
            "offline": self.offline,
            "old_public": self.old_public,
            "new_public": self.new_public,
            "rule_before": self.rule_before,
            "steps": self.steps,
        }
        atomic_write(self.path, json.dumps(data, indent=2) + "\n")

    def state(self, step: int) -> str:
        """``pending``, ``done`` or ``skipped``."""
        return self.steps.get(str(step), {}).get("state", "pending")

    def is_done(self, step: int) -> bool:
        """True once the step has committed (done or deliberately skipped)."""
        return self.state(step) in {"done", "skipped"}

    def commit(self, step: int, state: str = "done", detail: str = "") -> None:
        """Record the step and save."""
        self.steps[str(step)] = {"state": state, "at": _now(), "detail": detail}
        self.save()

    def reopen(self, step: int) -> None:
        """Mark a step to be run again and save."""
        self.steps.pop(str(step), None)
        self.save()


@dataclass
class Rotation:
    """One cluster's rotation against a repository root and a key store."""

    root: Path
    key_dir: Path
    cluster: str
    offline: bool = False
    push: Callable[[str, list[Path]], str] = push_keys
    report: Report = print

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()
        self.key_dir = Path(self.key_dir)
        clusters.cluster_dir(self.root, self.cluster)
        self.sops = Sops(self.root)
        self.journal_file = journal_path(self.key_dir, self.cluster)
        self.current_file = keystore.key_path(self.key_dir, self.cluster)
        self.pending_file = keystore.pending_path(self.key_dir, self.cluster)
        self._empty_home: Path | None = None

    # -- planning --------------------------------------------------------------------------

    def plan(self) -> list[str]:
        """What a run (or resume) would do, step by step; changes nothing."""
        journal = Journal.load(self.journal_file)
        active = journal if journal is not None and journal.finished is None else None
        files = encrypted_files(self.root, self.cluster)
        lines = [
            f"rotation of cluster {self.cluster}: {len(files)} encrypted file(s) "
            f"under k8s/clusters/{self.cluster}/"
        ]
        if active is not None:
            lines.append(
                f"in progress since {active.started} (journal {self.journal_file}); resume with --resume"
            )
            old = active.old_public
        else:
            old = keystore.load(self.key_dir, self.cluster).public
        lines.append(f"old key: {old} ({self.current_file})")
        lines.append(
            f"new key: {active.new_public if active and active.new_public else '(generated in step 1)'}"
            f" ({self.pending_file})"
        )
        for number, text in STEPS.items():
            state = active.state(number) if active is not None else "pending"
            if number in ONLINE_STEPS and (self.offline or (active is not None and active.offline)):
                text += " - skipped (--offline)"
            lines.append(f"  [{state:>7}] {number}. {text}")
        return lines

    # -- running ---------------------------------------------------------------------------

    def _refuse_env_keys(self) -> None:
        for name in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD"):
            if os.environ.get(name):
                raise RotationError(
                    f"${name} is set; a rotation must use only the key store's keys to prove the old key no "
                    f"longer decrypts. Unset it and run again.",
                    cluster=self.cluster,
                )

    def _start(self, resume: bool) -> Journal:
        journal = Journal.load(self.journal_file)
        active = journal if journal is not None and journal.finished is None else None
        if active is not None and not resume:
            done = [n for n in STEPS if active.is_done(n)]
            raise RotationError(
                f"a rotation of cluster {self.cluster} is already in progress (journal {self.journal_file}, "
                f"steps done: {done or 'none'}); finish it with "
                f"`invoke keys.rotate --cluster {self.cluster} --resume`",
                cluster=self.cluster,
                journal=str(self.journal_file),
            )
        if active is None and resume:
            raise RotationError(
                f"no rotation of cluster {self.cluster} to resume "
                f"(no unfinished journal at {self.journal_file})",
                cluster=self.cluster,
                journal=str(self.journal_file),
            )
        if active is not None:
            if Path(active.root) != self.root:
                raise RotationError(
                    f"the rotation in {self.journal_file} was started in {active.root}, not {self.root}; "
                    "resume it from there",
                    cluster=self.cluster,
                    journal=str(self.journal_file),
                )
            if self.offline:
                active.offline = True
            return active
        old = keystore.load(self.key_dir, self.cluster)
        if self.pending_file.exists():
            raise KeyStoreError(
                f"{self.pending_file} exists but no rotation is in progress; move it away and run again",
                cluster=self.cluster,
                key_file=str(self.pending_file),
            )
        rule = rules.cluster_recipients(self.root, self.cluster)
        if old.public not in rule:
            raise RotationError(
                f"the key in {old.path} is not a recipient of cluster {self.cluster}'s .sops.yaml rule; "
                "fix the rule (or `invoke secrets.scaffold`) before rotating",
                cluster=self.cluster,
            )
        strangers = [
            path
            for path in encrypted_files(self.root, self.cluster)
            if old.public not in file_recipients(path)
        ]
        if strangers:
            names = "\n".join(f"- {self.sops.relative(p)}" for p in strangers)
            raise RotationError(
                f"these files of cluster {self.cluster} are not encrypted to the key in {old.path}, so they "
                f"cannot be re-keyed (run `invoke secrets.scaffold --cluster {self.cluster}` first):"
                f"\n{names}",
                cluster=self.cluster,
            )
        journal = Journal(
            path=self.journal_file,
            cluster=self.cluster,
            root=str(self.root),
            old_public=old.public,
            rule_before=rule,
            offline=self.offline,
        )
        journal.save()
        return journal

    def run(self, *, resume: bool = False) -> Journal:
        """Run (or resume) the rotation to the end; returns the finished journal."""
        self._refuse_env_keys()
        journal = self._start(resume)
        self._clean_temp_files()
        with tempfile.TemporaryDirectory(prefix="fluxops-rotation-") as empty:
            self._empty_home = Path(empty)
            return self._run_steps(journal)

    def _run_steps(self, journal: Journal) -> Journal:
        steps = {
            1: self._generate,
            2: self._add_recipient,
            3: lambda j: self._push(j, [self.current_file, self.pending_file]),
            4: self._rotate,
            5: self._verify,
            6: lambda j: self._push(j, [self.pending_file]),
            7: self._retire,
        }
        for number, action in steps.items():
            if journal.is_done(number):
                self.report(f"step {number}: already done")
                continue
            self.report(f"step {number}: {STEPS[number]}")
            outcome = action(journal)
            state, detail = outcome if isinstance(outcome, tuple) else ("done", outcome or "")
            journal.commit(number, state, detail)
            if detail:
                self.report(f"step {number}: {detail}")
            _fault(number)
        journal.finished = _now()
        journal.save()
        self.report(f"rotation of cluster {self.cluster} finished; new key {journal.new_public}")
        if journal.state(6) == "skipped":
            self.report(
                f"the cluster's flux-system/sops-age secret was not updated: put {self.current_file} in it "
                "(data key ending in .agekey) before Flux reconciles the re-encrypted files"
            )
        self.report(f"commit the result: git add .sops.yaml k8s/clusters/{self.cluster} && git commit")
        return journal

    def _clean_temp_files(self) -> None:
        tree = clusters.cluster_dir(self.root, self.cluster)
        for leftover in tree.rglob(".*.sops.yaml.*.tmp"):
            leftover.unlink(missing_ok=True)

    def _keys(self, journal: Journal) -> tuple[KeySource, KeySource]:
        old_file = self.current_file
        if journal.is_done(7) or keystore.public_key(old_file, cluster=self.cluster) != journal.old_public:
            raise RotationError(
                f"{old_file} no longer holds the old key {journal.old_public}; restore it to continue",
                cluster=self.cluster,
                journal=str(self.journal_file),
            )
        return (
            KeySource.store_file(self.cluster, old_file, empty_home=self._empty_home),
            KeySource.store_file(self.cluster, self.pending_file, empty_home=self._empty_home),
        )

    def _counted(self, step: int, func: Callable[[Path], bool]) -> Callable[[Path], bool]:
        lock = threading.Lock()
        count = 0

        def wrapped(path: Path) -> bool:
            nonlocal count
            changed = func(path)
            if changed:
                with lock:
                    count += 1
                    _fault(step, count)
            return changed

        return wrapped

    def _generate(self, journal: Journal) -> str:
        if self.pending_file.exists():
            journal.new_public = keystore.public_key(self.pending_file, cluster=self.cluster)
            detail = f"reusing pending key {self.pending_file}"
        else:
            journal.new_public = keystore.create(self.pending_file).public
            detail = f"new key {journal.new_public} in {self.pending_file}"
        journal.save()
        return detail

    def _add_recipient(self, journal: Journal) -> str:
        assert journal.new_public
        old_key, _ = self._keys(journal)
        wanted = [*(r for r in journal.rule_before if r != journal.new_public), journal.new_public]
        rules.set_cluster_recipients(self.root, self.cluster, wanted)
        new = journal.new_public

        def one(path: Path) -> bool:
            if new in file_recipients(path):
                return False
            self.sops.updatekeys(path, old_key)
            return True

        files = encrypted_files(self.root, self.cluster)
        changed = parallel(self._counted(2, one), files)
        return f"{sum(changed)} of {len(files)} file(s) re-wrapped for old + new key"

    def _push(self, journal: Journal, key_files: list[Path]) -> tuple[str, str]:
        if journal.offline:
            return "skipped", "offline"
        try:
            return "done", self.push(self.cluster, key_files)
        except PushUnavailable as exc:
            return "skipped", str(exc)

    def _rotate(self, journal: Journal) -> str:
        assert journal.new_public
        old_key, new_key = self._keys(journal)
        old, new = journal.old_public, journal.new_public
        wanted = [*(r for r in journal.rule_before if r not in {old, new}), new]
        rules.set_cluster_recipients(self.root, self.cluster, wanted)

        def one(path: Path) -> bool:
            have = file_recipients(path)
            if old not in have and new in have:
                return False
            key = new_key if new in have else old_key
            self.sops.rotate(path, key, add=[] if new in have else [new], remove=[old] if old in have else [])
            return True

        files = encrypted_files(self.root, self.cluster)
        changed = parallel(self._counted(4, one), files)
        return f"{sum(changed)} of {len(files)} file(s) given a new data key for the new key only"

    def _verify(self, journal: Journal) -> str:
        old_key, new_key = self._keys(journal)

        def one(path: Path) -> str | None:
            rel = self.sops.relative(path)
            if journal.old_public in file_recipients(path):
                return f"{rel}: old key still a recipient"
            if not self.sops.can_decrypt(path, new_key):
                return f"{rel}: does not decrypt with the new key"
            if self.sops.can_decrypt(path, old_key):
                return f"{rel}: still decrypts with the old key"
            return None

        files = encrypted_files(self.root, self.cluster)
        problems = [p for p in parallel(one, files) if p]
        if problems:
            journal.reopen(4)
            raise RotationError(
                "verification failed; step 4 will run again on --resume:\n"
                + "\n".join(f"- {p}" for p in problems),
                cluster=self.cluster,
                journal=str(self.journal_file),
            )
        return f"{len(files)} file(s) decrypt with the new key only"

    def _retire(self, journal: Journal) -> str:
        detail = []
        if self.current_file.exists():
            current = keystore.public_key(self.current_file, cluster=self.cluster)
            if current == journal.old_public:
                archived = keystore.archive(self.current_file, self.key_dir, self.cluster)
                detail.append(f"old key archived to {archived}")
        if self.pending_file.exists():
            os.replace(self.pending_file, self.current_file)
            detail.append(f"new key is now {self.current_file}")
        if keystore.public_key(self.current_file, cluster=self.cluster) != journal.new_public:
            raise RotationError(
                f"{self.current_file} does not hold the new key {journal.new_public}",
                cluster=self.cluster,
                journal=str(self.journal_file),
            )
        return "; ".join(detail) or "already retired"
