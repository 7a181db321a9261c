"""The repository's ``.sops.yaml``: one creation rule per cluster, edited through a ruamel round trip.

sops applies the first rule whose ``path_regex`` matches (flux-sops-facts.md, SOPS facts), so a new
cluster rule goes before the first rule that would already match the cluster's files.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from fluxops.errors import SopsError
from fluxops.files import atomic_write
from fluxops.yamlstyle import round_trip

CONFIG_NAME = ".sops.yaml"
ENCRYPTED_REGEX = "^(data|stringData)$"
_RECIPIENT_RE = re.compile(r"\bage1[02-9ac-hj-np-z]{58}\b")


def config_path(root: Path) -> Path:
    """The ``.sops.yaml`` of a repository root."""
    return Path(root) / CONFIG_NAME


def cluster_regex(cluster: str) -> str:
    """The path_regex fluxops writes for a cluster: its secret files under ``k8s/clusters/<cluster>/``."""
    return rf"k8s/clusters/{re.escape(cluster)}/.*\.sops\.ya?ml$"


def sample_path(cluster: str) -> str:
    """A path inside the cluster's tree, to ask which rule would apply there."""
    return f"k8s/clusters/{cluster}/infrastructure-config/example.sops.yaml"


def placeholder_recipients(root: Path) -> set[str]:
    """Recipients ``.sops.yaml`` marks with a ``# placeholder`` comment on their line.

    The shipped tree is encrypted to throw-away keys whose private halves were deleted
    (docs/secrets.md); replacing those is always safe, replacing any other recipient is not.
    """
    path = config_path(root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return set()
    found: set[str] = set()
    for line in text.splitlines():
        code, hash_, comment = line.partition("#")
        if hash_ and re.search(r"\bplaceholder\b", comment, re.IGNORECASE):
            found.update(_RECIPIENT_RE.findall(code))
    return found


def _load(path: Path) -> CommentedMap:
    if not path.exists():
        return CommentedMap(creation_rules=CommentedSeq())
    try:
        data = round_trip().load(path.read_text())
    except Exception as exc:
        raise SopsError(f"{path}: not valid YAML ({exc}); fix it by hand", path=str(path)) from None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, dict):
        raise SopsError(f"{path}: expected a mapping with creation_rules", path=str(path))
    if data.get("creation_rules") is None:
        data["creation_rules"] = CommentedSeq()
    if not isinstance(data["creation_rules"], list):
        raise SopsError(f"{path}: creation_rules must be a list", path=str(path))
    return data


def rules(root: Path) -> list[dict[str, Any]]:
    """The creation rules, in order."""
    return list(_load(config_path(root))["creation_rules"])


def _matches(rule: dict[str, Any], path: str) -> bool:
    regex = rule.get("path_regex")
    if regex is None:
        return True
    try:
        return re.search(str(regex), path) is not None
    except re.error:
        return False


def rule_for(root: Path, path: str) -> dict[str, Any] | None:
    """The rule sops applies to a repository-relative path: the first that matches."""
    for rule in rules(root):
        if _matches(rule, path):
            return rule
    return None


def _age_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
    return [str(item).strip() for item in value]


def recipients(rule: dict[str, Any] | None) -> list[str]:
    """The age recipients of a rule (string or list form), in order."""
    return _age_list(rule.get("age")) if rule else []


def cluster_recipients(root: Path, cluster: str) -> list[str]:
    """The recipients the rule for the cluster's files names."""
    return recipients(rule_for(root, sample_path(cluster)))


def own_recipients(root: Path, cluster: str) -> list[str]:
    """The recipients of the cluster's own rule (not of a catch-all that happens to match), if it has one."""
    creation_rules = rules(root)
    index = _own_rule_index(creation_rules, cluster)
    return recipients(creation_rules[index]) if index is not None else []


def _own_rule_index(creation_rules: list[Any], cluster: str) -> int | None:
    prefix = f"k8s/clusters/{cluster}/"
    for index, rule in enumerate(creation_rules):
        regex = str(rule.get("path_regex", "")) if isinstance(rule, dict) else ""
        if regex == cluster_regex(cluster) or regex.lstrip("^").replace("\\/", "/").startswith(prefix):
            return index
    return None


def set_cluster_recipients(root: Path, cluster: str, age: list[str]) -> bool:
    """Make the cluster's rule name exactly ``age``; add the rule if missing. True if the file changed."""
    path = config_path(root)
    data = _load(path)
    creation_rules = data["creation_rules"]
    age_value: Any = age[0] if len(age) == 1 else ",".join(age)
    index = _own_rule_index(creation_rules, cluster)
    if index is None:
        rule = CommentedMap()
        rule["path_regex"] = cluster_regex(cluster)
        rule["encrypted_regex"] = ENCRYPTED_REGEX
        rule["age"] = age_value
        position = next(
            (i for i, other in enumerate(creation_rules) if _matches(other, sample_path(cluster))),
            len(creation_rules),
        )
        creation_rules.insert(position, rule)
    else:
        rule = creation_rules[index]
        if recipients(rule) == age:
            return False
        rule["age"] = age_value
        rule.ca.items.pop("age", None)  # a comment on the old value (e.g. "placeholder") is not the new one's
        if "encrypted_regex" not in rule and not any(
            k.endswith("_regex") and k != "path_regex" for k in rule
        ):
            rule["encrypted_regex"] = ENCRYPTED_REGEX
        earlier = next(
            (i for i, other in enumerate(creation_rules[:index]) if _matches(other, sample_path(cluster))),
            None,
        )
        if earlier is not None:
            raise SopsError(
                f"{path}: rule {earlier + 1} already matches {sample_path(cluster)}, so the rule for "
                f"cluster {cluster} (rule {index + 1}) never applies; move it up",
                cluster=cluster,
                path=str(path),
            )
    buffer = io.StringIO()
    round_trip().dump(data, buffer)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    atomic_write(path, buffer.getvalue(), mode=mode)
    return True
