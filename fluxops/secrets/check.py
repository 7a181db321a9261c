"""The one secret checker of a repository: ``invoke secrets.check``, ``layout.validate``, the pre-commit hook.

It looks at every file git would commit (:func:`fluxops.secrets.walk.repository_files`: tracked files
and untracked ones .gitignore does not exclude, hidden folders included). Whether a file is encrypted
is decided by its content (:mod:`fluxops.secrets.encrypted`), never by its name. Findings:

- ``private-key``: a file holds an age private key (an X25519 identity or a post-quantum one, the
  identity line of ``age-keygen``; see :mod:`fluxops.secrets.private_keys`), any file type; the
  finding names the file and line, never the key.
- ``sops-unencrypted``: a file named ``*.sops.yaml``/``*.sops.yml`` (not the ``.sops.yaml`` config)
  holds no sops metadata; or an encrypted file holds a value in clear where its own rule
  (``encrypted_regex`` & co. in its metadata) says sops encrypts, i.e. added after encryption.
- ``plaintext-secret``: a ``kind: Secret`` with values in a file that is not sops-encrypted, whatever
  its name; a kustomize ``secretGenerator`` with literals, or reading files that are not encrypted.
- ``secret-damaged``: sops ciphertext without (complete) metadata, e.g. a truncated file. Restore it
  from git; re-encrypting it would encrypt the ciphertext twice.
- ``secret-tampered`` / ``secret-encrypted-twice`` / ``sops-decrypt``: found by decrypting (below).
- ``sops-recipients``: an encrypted file's age recipients differ from those of the ``.sops.yaml``
  creation rule matching it (files encrypted only to PGP, KMS, ... keys are named as such).
- ``sops-config``: ``.sops.yaml`` unreadable or with an invalid ``path_regex``, or no creation rule
  matches a ``*.sops.yaml`` file (a file encrypted under another name may have none).
- ``yaml``: a ``.yaml``/``.yml`` file YAML cannot parse (a templated ``stringData: {{ pw }}`` must not
  pass unseen). Exempt: files under the ``templates/`` folder of a Helm chart (the folder holding
  ``Chart.yaml``); Helm renders those, YAML does not read them. In a chart's templates a Secret
  value that is a template expression (``{{ ... }}``) is not a finding.
- ``key-store``: the key store (``key_dir``) is inside the checked repository.

Values sops leaves in clear by design are never findings: empty strings, nulls, empty maps and
empty lists (sops encrypts every other scalar, numbers and booleans included).

MAC verification: an encrypted file under ``k8s/clusters/<cluster>/`` whose cluster key is at hand
(the environment's SOPS_AGE_KEY_FILE / SOPS_AGE_KEY / SOPS_AGE_KEY_CMD, else
``<key_dir>/<cluster>.agekey``) is decrypted with sops, in parallel, in memory only; a MAC or value
that does not verify is ``secret-tampered``, ciphertext inside the decrypted text is
``secret-encrypted-twice``. A missing key, or a key that is not one of the file's recipients, is not
a finding; the file is then only checked by its readable parts.

Run as ``invoke secrets.check`` (key store: ``fluxops.key_dir`` of the invoke config) or
``python -m fluxops.secrets.check [ROOT] [--key-dir DIR]`` (the pre-commit hook; key store: --key-dir,
else $INVOKE_FLUXOPS_KEY_DIR, else ``fluxops.key_dir`` of ROOT/invoke.yaml, else ~/.config/sops/age).
Exit status: 0 no finding, 1 findings, 2 the check could not run.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ruamel.yaml import YAML

from fluxops import clusters
from fluxops.errors import FluxopsError
from fluxops.progname import progname
from fluxops.secrets import rules, walk
from fluxops.secrets.encrypted import Inspection, inspect
from fluxops.secrets.findings import Finding, Report, relative
from fluxops.secrets.mac_check import verify_macs
from fluxops.secrets.private_keys import DEFAULT_KEY_DIR, key_store_inside, private_keys
from fluxops.secrets.quick_inspect import YAML_SUFFIXES, in_chart_templates, quick_inspect
from fluxops.secrets.sops_values import (
    dotted_path,
    is_sops_name,
    plaintext_secret,
    plaintext_values,
    sops_suffix,
)

KEY_DIR_ENV = "INVOKE_FLUXOPS_KEY_DIR"


def _in_scope(rel: str, within: Sequence[str]) -> bool:
    return not within or any(rel == w.rstrip("/") or rel.startswith(w.rstrip("/") + "/") for w in within)


# -- .sops.yaml ---------------------------------------------------------------------------------


@dataclass
class _Config:
    """The creation rules, loaded once, and what is wrong with them."""

    rules: list[dict[str, Any]] | None
    findings: list[Finding]

    def rule_for(self, rel: str) -> dict[str, Any] | None:
        """The rule sops applies to a path: the first whose path_regex matches (bad regexes skipped)."""
        for rule in self.rules or []:
            regex = rule.get("path_regex") if isinstance(rule, dict) else None
            try:
                if regex is None or re.search(str(regex), rel):
                    return rule
            except re.error:
                continue
        return None


def _load_config(root: Path) -> _Config:
    name = rules.CONFIG_NAME
    try:
        loaded = rules.rules(root)
    except FluxopsError as exc:
        return _Config(None, [Finding(name, f"cannot read the sops config: {exc}", "sops-config")])
    findings = []
    for index, rule in enumerate(loaded):
        regex = rule.get("path_regex") if isinstance(rule, dict) else None
        if regex is None:
            continue
        try:
            re.compile(str(regex))
        except re.error as exc:
            findings.append(
                Finding(
                    name,
                    f"creation rule {index + 1}: path_regex {str(regex)!r} is not a valid regular "
                    f"expression ({exc})",
                    "sops-config",
                    keys=("creation_rules", index, "path_regex"),
                )
            )
    return _Config(loaded, findings)


# -- one file -----------------------------------------------------------------------------------


def _recipient_findings(rel: str, inspection: Inspection, config: _Config) -> list[Finding]:
    have = sorted(inspection.recipients)
    others = [s for s in inspection.key_services if s != "age"]
    if config.rules is None:
        return []
    rule = config.rule_for(rel)
    if rule is None and not is_sops_name(rel):
        return []  # encrypted by hand outside the rules' naming: nothing to compare against
    if rule is None:
        return [
            Finding(
                rel,
                "no creation rule in .sops.yaml matches this file, so sops cannot re-key it "
                f"(recipients {', '.join(have) or 'none'}); add one with `{progname()} keys.generate`",
                "sops-config",
            )
        ]
    want = sorted(rules.recipients(rule))
    if have == want:
        return []
    if not have and others:
        what = f"encrypted only to {', '.join(others)} key(s), no age recipient"
    else:
        what = f"recipients {', '.join(have)}" + (f" (and {', '.join(others)} keys)" if others else "")
    return [
        Finding(
            rel,
            f"{what}; its .sops.yaml rule names {', '.join(want) or 'no age recipient'}. Re-key it with "
            f"`{progname()} secrets.rekey` (needs a key that decrypts it) or `{progname()} secrets.scaffold`",
            "sops-recipients",
            keys=("sops",),
        )
    ]


def _encrypted_findings(rel: str, inspection: Inspection, config: _Config) -> list[Finding]:
    if not inspection.documents:  # dotenv / INI: only their metadata keys are readable here
        return []
    findings = []
    for index, document in enumerate(inspection.documents):
        meta = document.get("sops") if isinstance(document, dict) else None
        if not isinstance(meta, dict):
            continue
        try:
            trails = list(plaintext_values(document, meta))
        except re.error:
            findings.append(
                Finding(rel, "its sops metadata has an invalid encrypted/unencrypted regex", "secret-damaged")
            )
            continue
        for trail in trails:
            findings.append(
                Finding(
                    rel,
                    f"plaintext value at {dotted_path(trail)} (added after encryption); re-enter it with "
                    f"`{progname()} secrets.edit`",
                    "sops-unencrypted",
                    document=index,
                    keys=trail,
                )
            )
    return findings + _recipient_findings(rel, inspection, config)


def _generator_findings(
    root: Path, path: Path, rel: str, index: int, document: dict[str, Any]
) -> list[Finding]:
    generators = document.get("secretGenerator")
    kustomization = document.get("kind") == "Kustomization" or path.name in clusters.KUSTOMIZATION_FILES
    if not kustomization or not isinstance(generators, list):
        return []
    findings = []
    for number, generator in enumerate(generators):
        if not isinstance(generator, dict):
            continue
        name = generator.get("name", "?")
        where = {"code": "plaintext-secret", "document": index, "keys": ("secretGenerator", number)}
        if generator.get("literals"):
            findings.append(
                Finding(rel, f"secretGenerator {name} has literals: plaintext values in git", **where)
            )
        sources = [str(s) for key in ("files", "envs") for s in generator.get(key) or []]
        if generator.get("env"):
            sources.append(str(generator["env"]))
        for source in sources:
            target = (path.parent / source.split("=", 1)[-1]).resolve()
            if not target.is_relative_to(root) or inspect(target).state != "encrypted":
                findings.append(
                    Finding(
                        rel,
                        f"secretGenerator {name} reads {source}, which is not sops-encrypted (Flux "
                        "decrypts generator files only when they are)",
                        **where,
                    )
                )
    return findings


def check_file(root: Path, path: Path, config: _Config | None = None) -> list[Finding]:
    """The findings of one file's readable content (no decryption, no key scan)."""
    root, path = Path(root).absolute(), Path(path).absolute()
    return inspection_findings(root, inspect(path), config if config is not None else _load_config(root))


def inspection_findings(root: Path, inspection: Inspection, config: _Config) -> list[Finding]:
    """The findings of a file's readable content, from its inspection."""
    path = inspection.path
    rel = relative(root, path)
    named = is_sops_name(path.name)
    if inspection.state == "damaged":
        problem = inspection.problem.replace("`git checkout -- FILE`", f"`git checkout -- {rel}`")
        return [Finding(rel, f"damaged: {problem}", "secret-damaged")]
    if inspection.state == "unparsable":
        if path.suffix in YAML_SUFFIXES and not in_chart_templates(root, path):
            extra = "; cannot tell whether it is encrypted" if named else ""
            return [Finding(rel, f"{inspection.problem}{extra}", "yaml")]
        return []
    if inspection.state == "encrypted":
        return _encrypted_findings(rel, inspection, config)
    findings = []
    if named:
        findings.append(
            Finding(
                rel,
                f"named *{sops_suffix(path.name)} but not encrypted (no sops metadata); "
                f"run `{progname()} secrets.encrypt`",
                "sops-unencrypted",
            )
        )
        if config.rules is not None and config.rule_for(rel) is None:
            findings.append(Finding(rel, "no creation rule in .sops.yaml matches this file", "sops-config"))
    templated = in_chart_templates(root, path)
    for index, document in enumerate(inspection.documents):
        if not named and plaintext_secret(document, templated=templated):
            name = (document.get("metadata") or {}).get("name", "?") if isinstance(document, dict) else "?"
            findings.append(
                Finding(
                    rel,
                    f"plaintext Secret {name}: move it to a *.sops.yaml file and run `{progname()} "
                    f"secrets.encrypt` (or make it with `{progname()} secrets.new`); if it was committed, "
                    "change its values",
                    "plaintext-secret",
                    document=index,
                )
            )
        if isinstance(document, dict):
            findings.extend(_generator_findings(root, path, rel, index, document))
    return findings


# -- decrypting ---------------------------------------------------------------------------------


# -- the whole repository -----------------------------------------------------------------------


def scan(
    root: Path, key_dir: Path | None = None, *, within: Sequence[str] = (), syntax: bool = True
) -> Report:
    """Every finding under ``root`` (or only in the ``within`` paths, relative to it), sorted.

    ``key_dir`` is the key store: checked to be outside the repository and used, with the
    environment's key, to verify MACs. Without it only an environment key verifies. A caller that
    reports YAML syntax errors itself passes ``syntax=False``: files that cannot hold a secret are
    then not parsed (a secret file that does not parse is still reported).
    """
    root = Path(root).absolute()
    files = [p for p in walk.repository_files(root) if _in_scope(relative(root, p), within)]
    report = Report(findings=key_store_inside(root, key_dir) + private_keys(root, files))
    config = _load_config(root)
    if _in_scope(rules.CONFIG_NAME, within):
        report.findings.extend(config.findings)
    encrypted: list[Inspection] = []
    for path in files:
        if path.name == rules.CONFIG_NAME or not walk.is_candidate(path):
            continue
        inspection = quick_inspect(path, syntax=syntax)
        report.findings.extend(inspection_findings(root, inspection, config))
        if inspection.state == "encrypted":
            encrypted.append(inspection)
    report.encrypted = len(encrypted)
    report.verified, macs = verify_macs(root, key_dir, encrypted)
    in_clear = {f.path for f in report.findings if f.code == "sops-unencrypted"}
    report.findings.extend(f for f in macs if not (f.code == "sops-unencrypted" and f.path in in_clear))
    report.findings.sort()
    return report


def check(
    root: Path, key_dir: Path | None = None, *, within: Sequence[str] = (), syntax: bool = True
) -> list[Finding]:
    """Every finding under ``root``, sorted by file (see :func:`scan`)."""
    return scan(root, key_dir, within=within, syntax=syntax).findings


# -- command line -------------------------------------------------------------------------------


def default_key_dir(root: Path) -> Path:
    """The hook's key store: $INVOKE_FLUXOPS_KEY_DIR, else invoke.yaml's fluxops.key_dir, else the default."""
    value: Any = os.environ.get(KEY_DIR_ENV)
    if not value:
        try:
            config = YAML(typ="safe", pure=False).load((Path(root) / "invoke.yaml").read_text())
            value = ((config or {}).get("fluxops") or {}).get("key_dir")
        except Exception:
            value = None
    if not isinstance(value, str) or not value:
        return DEFAULT_KEY_DIR.expanduser()
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(root).absolute() / path


def emit(lines: Iterable[str], stream: TextIO) -> bool:
    """Write lines and flush; False (and later writes silenced) when the reader went away (``| head``)."""
    try:
        for line in lines:
            stream.write(f"{line}\n")
        stream.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
        return False
    return True


def summary(report: Report) -> str:
    """The closing line: problems found, or what was checked."""
    if report.findings:
        return f"{len(report.findings)} secret problem(s) found"
    return f"secrets: ok ({report.encrypted} encrypted file(s), {report.verified} verified by decrypting)"


def main(argv: list[str] | None = None) -> int:
    """Command line: findings and a summary on stderr; exit 1 on findings, 2 if the check cannot run."""
    parser = argparse.ArgumentParser(
        prog="python -m fluxops.secrets.check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("root", nargs="?", default=".", help="repository root (default: current folder)")
    parser.add_argument("files", nargs="*", help="ignored: the whole repository is always checked")
    parser.add_argument("--key-dir", help="age key store (default: see the module help)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    key_dir = Path(args.key_dir).expanduser() if args.key_dir else default_key_dir(root)
    try:
        report = scan(root, key_dir)
    except FluxopsError as exc:
        emit([f"error: {exc}"], sys.stderr)
        return 2
    emit([*map(str, report.findings), summary(report)], sys.stderr)
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
