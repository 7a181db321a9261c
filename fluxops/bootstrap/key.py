"""The ``flux-system/sops-age`` Secret: Flux's age identities, put on the node through stdin only.

The Secret is built here and sent as YAML on the stdin of ``kubectl apply -f -`` (one command, the
same object ``kubectl create secret generic sops-age --from-file=age.agekey=/dev/stdin --dry-run=client
-o yaml`` prints, plus an annotation): the key is never in an argv and never written to the node's
disk. The annotation ``fluxops.io/age-key-sha256`` holds a SHA-256 of the identities, so a later
bootstrap compares hashes, not keys, and leaves an unchanged Secret alone.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import yaml

from fluxops.bootstrap.node import FLUX_NAMESPACE, BootstrapError, Node
from fluxops.masking import Secret

SECRET_NAME = "sops-age"
KEY_ENTRY = "age.agekey"
HASH_ANNOTATION = "fluxops.io/age-key-sha256"


def digest(entries: dict[str, Secret]) -> str:
    """The SHA-256 of a Secret's entries (what its annotation records; never the values)."""
    h = hashlib.sha256()
    for name in sorted(entries):
        h.update(f"{name}\0{len(entries[name].reveal())}\0".encode() + entries[name].reveal().encode())
    return h.hexdigest()


def joined(key_texts: Sequence[Secret]) -> Secret:
    """Several key files as one identities file (age reads every identity in it)."""
    return Secret("".join(t.reveal() if t.reveal().endswith("\n") else t.reveal() + "\n" for t in key_texts))


def namespace_yaml() -> str:
    """The flux-system Namespace."""
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FLUX_NAMESPACE}})


def _b64(value: Secret) -> str:
    return base64.b64encode(value.reveal().encode()).decode()


def secret_yaml(name: str, entries: dict[str, Secret]) -> Secret:
    """A Secret's YAML (it holds secret values: a Secret, for stdin only)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": FLUX_NAMESPACE,
            "annotations": {HASH_ANNOTATION: digest(entries)},
        },
        "type": "Opaque",
        "data": {key: _b64(value) for key, value in sorted(entries.items())},
    }
    return Secret(yaml.safe_dump(doc, sort_keys=False))


def current_digest(node: Node, name: str) -> str | None:
    """The hash the node's Secret records; None when there is no Secret (no annotation: "")."""
    found = node.get_json("secret", name, "-n", FLUX_NAMESPACE, check=False)
    if found is None:
        return None
    return str(((found.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION, ""))


def wanted(node: Node, name: str, entries: dict[str, Secret]) -> str:
    """What putting the Secret would do: ``create``, ``update`` or ``unchanged``."""
    have = current_digest(node, name)
    if have is None:
        return "create"
    return "unchanged" if have == digest(entries) else "update"


def put_secret(node: Node, name: str, entries: dict[str, Secret]) -> str:
    """Namespace flux-system and the Secret ``name`` on the node, through stdin; ``created``,
    ``updated`` or ``unchanged`` (not touched when its hash matches)."""
    action = wanted(node, name, entries)
    if action == "unchanged":
        return "unchanged"
    if node.get_json("namespace", FLUX_NAMESPACE, check=False) is None:
        node.apply(namespace_yaml())
    hidden = [*entries.values(), *(Secret(_b64(v)) for v in entries.values())]
    node.apply(secret_yaml(name, entries), secrets=hidden)
    if current_digest(node, name) != digest(entries):
        raise BootstrapError(f"{node.name}: the {FLUX_NAMESPACE}/{name} Secret did not take its new data")
    return "created" if action == "create" else "updated"


def put_key(node: Node, identities: Secret) -> str:
    """The sops-age Secret holding ``identities`` (see :func:`put_secret`)."""
    return put_secret(node, SECRET_NAME, {KEY_ENTRY: identities})
