"""Key rotation for one cluster, in seven journaled steps that survive a crash.

1. generate the new key (``<cluster>.pending.agekey``, 0600);
2. old + new key as recipients in ``.sops.yaml``; ``sops updatekeys -y`` every file (on staged
   copies, renamed into place), ``sops rotate --add-age`` for a file no creation rule matches;
3. both keys into the cluster's ``sops-age`` secret (unless offline) - if that cannot be done the
   rotation stops here, before any file loses the old key the cluster still decrypts with;
4. ``.sops.yaml`` without the old key; ``sops rotate --rm-age OLD`` every file (a new data key);
5. verify: every file decrypts with the new key alone and not with the old one;
6. the new key alone into the cluster (unless offline);
7. archive the old key (0600); the pending key becomes ``<cluster>.agekey``.

Every encrypted file of the cluster takes part, whatever its name (the content decides:
:mod:`fluxops.secrets.encrypted`); a file that is damaged or fails its MAC stops the rotation before
it starts. ``sops rotate`` alone never adds a recipient (sops#365, #901), hence step 2 before step 4. Every
step is idempotent over files: a file that already has the new recipient is skipped in step 2, a
file without the old recipient in step 4, so a crash between two files loses nothing. The journal
``<key_dir>/<cluster>.rotation.json`` (0600, written atomically) holds step states and public keys
only. At every moment each file is readable by the old key, the new key or both, and the operator
holds both until the old one is archived (still held, in the archive). One lock in the key store
keeps two rotations or re-keys from running at once.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxops import clusters
from fluxops.errors import FluxopsError, KeyStoreError, RotationError
from fluxops.files import atomic_write, exclusive
from fluxops.progname import progname
from fluxops.secrets import keystore, rules, staging
from fluxops.secrets.encrypted import file_recipients
from fluxops.secrets.sops import KeySource, Sops, parallel
from fluxops.secrets.walk import encrypted_files, inspect_cluster

JOURNAL_VERSION = 1
PUSH_UNAVAILABLE = "the keys cannot be put into the cluster from here"

STEPS: dict[int, str] = {
    1: "generate the new key (pending, 0600)",
    2: "make old and new key recipients in .sops.yaml and `sops updatekeys -y` every file",
    3: "put both keys in the cluster's sops-age secret (over SSH, stdin only); stop here if that fails",
    4: "new data keys (`sops rotate`) with only the new key as recipient",
    5: "verify every file decrypts with the new key alone and not with the old one",
    6: "put the new key alone in the cluster's sops-age secret",
    7: "archive the old key (0600); the new key becomes the cluster's key",
}
ONLINE_STEPS = (3, 6)

Report = Callable[[str], None]
StepHook = Callable[[int], None]
FileHook = Callable[[int, int], None]


def _no_step(step: int) -> None:
    pass


def _no_file(step: int, files_done: int) -> None:
    pass


class PushUnavailable(FluxopsError):
    """Putting keys into a cluster is not possible (yet, or from here)."""


def push_keys(
    cluster: str,
    key_files: list[Path],
    *,
    root: Path | None = None,
    inventory: Path | None = None,
    open_node: Callable[[Any], Any] | None = None,
) -> str:
    """Put the keys of ``key_files`` into the cluster's ``flux-system/sops-age`` secret (stdin only) on
    the cluster's server, then reconcile every phase to prove Flux still decrypts
    (:func:`fluxops.bootstrap.rotation_push.push`); what was done.

    ``root`` is the repository (a :class:`Rotation` binds its own); the server comes from
    ``inventory`` (default: the one the repository's tasks use). Any failure is PushUnavailable.
    """
    if root is None:
        raise PushUnavailable(f"{PUSH_UNAVAILABLE}: no repository given")
    from fluxops.bootstrap import rotation_push

    try:
        return rotation_push.push(root, cluster, key_files, inventory=inventory, open_node=open_node)
    except FluxopsError as exc:
        raise PushUnavailable(f"{PUSH_UNAVAILABLE}: {exc}") from None


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
    on_step: StepHook = _no_step  # observers: called after a step is committed ...
    on_file: FileHook = _no_file  # ... and after each file a step changed (step, files so far)
    inventory: Path | None = None  # where push_keys finds the cluster's server (default: the tasks')

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()
        self.key_dir = Path(self.key_dir)
        clusters.cluster_dir(self.root, self.cluster)
        self.sops = Sops(self.root)
        self.journal_file = journal_path(self.key_dir, self.cluster)
        self.current_file = keystore.key_path(self.key_dir, self.cluster)
        self.pending_file = keystore.pending_path(self.key_dir, self.cluster)
        self._empty_home: Path | None = None
        if self.push is push_keys:
            self.push = functools.partial(push_keys, root=self.root, inventory=self.inventory)

    # -- planning --------------------------------------------------------------------------

    def plan_data(self) -> dict[str, Any]:
        """What a run (or resume) would do, as data (``keys.rotate --check --json``); changes nothing."""
        journal = Journal.load(self.journal_file)
        active = journal if journal is not None and journal.finished is None else None
        offline = self.offline or (active is not None and active.offline)
        files = encrypted_files(self.root, self.cluster)
        old = active.old_public if active is not None else keystore.load(self.key_dir, self.cluster).public
        return {
            "cluster": self.cluster,
            "files": [
                p.relative_to(self.root).as_posix() if p.is_relative_to(self.root) else str(p) for p in files
            ],
            "in_progress": active is not None,
            "started": active.started if active is not None else None,
            "journal": str(self.journal_file),
            "offline": offline,
            "old_key": {"public": old, "file": str(self.current_file)},
            "new_key": {"public": active.new_public if active else None, "file": str(self.pending_file)},
            "steps": [
                {
                    "step": number,
                    "does": text,
                    "state": active.state(number) if active is not None else "pending",
                    "needs_cluster": number in ONLINE_STEPS,
                }
                for number, text in STEPS.items()
            ],
        }

    def plan(self) -> list[str]:
        """What a run (or resume) would do, step by step, as lines of text; changes nothing."""
        data = self.plan_data()
        lines = [
            f"rotation of cluster {self.cluster}: {len(data['files'])} encrypted file(s) "
            f"under k8s/clusters/{self.cluster}/"
        ]
        if data["in_progress"]:
            lines.append(
                f"in progress since {data['started']} (journal {self.journal_file}); resume with --resume"
            )
        lines.append(f"old key: {data['old_key']['public']} ({self.current_file})")
        lines.append(f"new key: {data['new_key']['public'] or '(generated in step 1)'} ({self.pending_file})")
        for step in data["steps"]:
            text = step["does"]
            if step["needs_cluster"] and data["offline"]:
                text += " - skipped (--offline)"
            elif step["needs_cluster"]:
                text += " - needs the cluster; without it the rotation stops here (or pass --offline)"
            lines.append(f"  [{step['state']:>7}] {step['step']}. {text}")
        return lines

    # -- running ---------------------------------------------------------------------------

    def _start(self, resume: bool) -> Journal:
        journal = Journal.load(self.journal_file)
        active = journal if journal is not None and journal.finished is None else None
        if active is not None and not resume:
            done = [n for n in STEPS if active.is_done(n)]
            raise RotationError(
                f"a rotation of cluster {self.cluster} is already in progress (journal {self.journal_file}, "
                f"steps done: {done or 'none'}); finish it with "
                f"`{progname()} keys.rotate --cluster {self.cluster} --resume`",
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
                f"the key in {old.path} is not a recipient of cluster {self.cluster}'s .sops.yaml rule "
                f"({', '.join(rule) or 'no rule'}); fix the rule before rotating",
                cluster=self.cluster,
            )
        self._refuse_unsound_files(old.path)
        strangers = [
            path
            for path in encrypted_files(self.root, self.cluster)
            if old.public not in file_recipients(path)
        ]
        if strangers:
            names = "\n".join(f"- {self.sops.relative(p)}" for p in strangers)
            raise RotationError(
                f"these files of cluster {self.cluster} are not encrypted to the key in {old.path}, so they "
                f"cannot be re-keyed; encrypt them to it first (`SOPS_AGE_KEY_FILE=<their key> invoke "
                f"secrets.rekey --cluster {self.cluster}`):\n{names}",
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
        with exclusive(keystore.lock_path(self.key_dir), f"keys.rotate --cluster {self.cluster}"):
            journal = self._start(resume)
            self._clean_temp_files()
            home = self.key_dir / f".{self.cluster}.rotation-home"  # made anew by every run
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(mode=0o700, parents=True)
            self._empty_home = home
            try:
                return self._run_steps(journal)
            finally:
                shutil.rmtree(home, ignore_errors=True)

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
            if state == "stopped":
                raise self._stopped(number, detail)
            journal.commit(number, state, detail)
            if detail:
                self.report(f"step {number}: {detail}")
            self.on_step(number)
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

    def _stopped(self, step: int, detail: str) -> RotationError:
        resume = f"{progname()} keys.rotate --cluster {self.cluster} --resume"
        if step == 3:
            why = (
                f"rotation of cluster {self.cluster} stopped before step 4: {detail}. Every file is still "
                "readable by the old and the new key, so the cluster keeps decrypting what is committed. "
                f"Once the cluster can be reached, continue with `{resume}`; or put both keys "
                f"({self.current_file}, {self.pending_file}) into its flux-system/sops-age secret yourself "
                "(data keys ending in .agekey) and continue with `--resume --offline`."
            )
        else:
            why = (
                f"rotation of cluster {self.cluster} stopped at step {step}: {detail}. The files are "
                "encrypted to the new key only and the cluster holds both keys, so it keeps decrypting. "
                f"Continue with `{resume}` to leave only the new key in the cluster (or `--resume "
                "--offline` once you have done that yourself)."
            )
        return RotationError(why, cluster=self.cluster, journal=str(self.journal_file))

    def _refuse_unsound_files(self, old_key_file: Path) -> None:
        """Refuse to start while a file of the cluster is damaged or fails its MAC with the old key."""
        found = inspect_cluster(self.root, self.cluster)
        problems = [f"- {self.sops.relative(i.path)}: {i.problem}" for i in found if i.state == "damaged"]
        key = KeySource.store_file(self.cluster, old_key_file)
        encrypted = [i.path for i in found if i.state == "encrypted"]
        for path, verdict in zip(
            encrypted, parallel(lambda p: self.sops.verify(p, key), encrypted), strict=True
        ):
            if verdict.state not in ("ok", "no-key"):  # no-key: named below as not encrypted to it
                problems.append(f"- {self.sops.relative(path)}: {verdict.detail}")
        if problems:
            raise RotationError(
                f"rotation of cluster {self.cluster} refused; these files are damaged and would be "
                "re-keyed as they are:\n" + "\n".join(problems),
                cluster=self.cluster,
            )

    def _clean_temp_files(self) -> None:
        """Remove what a killed run left: atomic_write temp files and staging copies (never originals)."""
        tree = clusters.cluster_dir(self.root, self.cluster)
        for leftover in tree.rglob(".*.tmp"):
            if ".sops." in leftover.name:
                leftover.unlink(missing_ok=True)
        staging.remove_leftovers(self.root)

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

    def _counted(self, step: int, func: Callable[[Path], bool], *, start: int = 0) -> Callable[[Path], bool]:
        lock = threading.Lock()
        count = start

        def wrapped(path: Path) -> bool:
            nonlocal count
            changed = func(path)
            if changed:
                with lock:
                    count += 1
                    self.on_file(step, count)
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
        files = encrypted_files(self.root, self.cluster)
        todo = [p for p in files if new not in file_recipients(p)]
        ruled = [p for p in todo if rules.rule_for(self.root, self.sops.relative(p)) is not None]
        count = 0
        lock = threading.Lock()

        def done(_path: Path, outcome: str) -> None:
            nonlocal count
            if outcome == "updated":
                with lock:
                    count += 1
                    self.on_file(2, count)

        self.sops.updatekeys_all(ruled, old_key, on_file=done)

        def add(path: Path) -> bool:  # no creation rule matches: add the recipient by hand
            self.sops.rotate(path, old_key, add=[new])
            return True

        parallel(self._counted(2, add, start=count), [p for p in todo if p not in ruled])
        return f"{len(todo)} of {len(files)} file(s) re-wrapped for old + new key"

    def _push(self, journal: Journal, key_files: list[Path]) -> tuple[str, str]:
        if journal.offline:
            return "skipped", "offline"
        try:
            return "done", self.push(self.cluster, key_files)
        except FluxopsError as exc:
            return "stopped", f"the keys could not be put into the cluster ({exc})"

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
