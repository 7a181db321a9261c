"""SOPS decryption as kustomize-controller does it, with the real sops binary.

kustomize-controller (internal/decryptor, Flux 2.7):

- ``ImportKeys``: the Secret named by ``spec.decryption.secretRef``, in the Kustomization's namespace,
  must exist (else the build fails with the API's NotFound, ``secrets "sops-age" not found``); each
  of its data entries whose name ends in ``.agekey`` is an age identity;
- ``DecryptResource``: an object with a ``sops`` block holding a ``mac`` is decrypted as JSON to JSON,
  without checking the MAC (``checkSopsMac`` is off in the controller: kustomize may have added
  fields); a failure reads ``decryption failed for 'Secret.v1.[noGrp]/name': failed to decrypt and
  format 'ns/name' Secret data: cannot get sops data key: <sops' explanation>``.

Only age identities are simulated (PGP, KMS and Vault entries are ignored), and encrypted values a
``secretGenerator`` reads from files are not decrypted before the build. The identities reach sops
in ``SOPS_AGE_KEY`` of its private environment (never argv, never a file); HOME is ``/nonexistent``,
so no key of the operator's (``~/.config/sops/age/keys.txt``, ``~/.ssh``) helps.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
from typing import Any

from fluxops.errors import CommandError
from fluxops.masking import Secret
from fluxops.secrets import editor
from fluxops.secrets.sops import PRIVATE_PREFIX, binary, sops_environment
from fluxops.shell import local

AGE_EXT = ".agekey"
TIMEOUT = 60.0
NO_HOME = "/nonexistent"  # the home of users without one: no key of anyone's can be found there


class DecryptionError(Exception):
    """sops could not decrypt an object; the message is Flux's."""


def age_identities(secret: dict[str, Any]) -> Secret:
    """The age identities of a decryption Secret: its ``*.agekey`` entries, decoded, one after another."""
    found = []
    for name, value in sorted((secret.get("data") or {}).items()):
        if str(name).endswith(AGE_EXT):
            try:
                found.append(base64.b64decode(str(value)).decode("utf-8", "replace").strip())
            except (binascii.Error, ValueError):
                continue
    return Secret("\n".join(found))


def is_encrypted(obj: dict[str, Any]) -> bool:
    """True for an object SOPS encrypted (a ``sops`` block with a ``mac``), as Flux detects it."""
    block = obj.get("sops")
    return isinstance(block, dict) and bool(block.get("mac"))


def gvk(obj: dict[str, Any]) -> str:
    """kustomize's ``Gvk.String()``: ``Secret.v1.[noGrp]``, ``Deployment.v1.apps``."""
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return f"{obj.get('kind') or '[noKind]'}.{version or '[noVer]'}.{group or '[noGrp]'}"


def decrypt(obj: dict[str, Any], identities: Secret) -> dict[str, Any]:
    """``obj`` decrypted by sops (JSON in, JSON out, MAC not checked); DecryptionError in Flux's words."""
    md = obj.get("metadata") or {}
    namespace, name, kind = md.get("namespace", ""), md.get("name", ""), obj.get("kind", "")
    head = f"decryption failed for '{gvk(obj)}/{name}': "
    head += f"failed to decrypt and format '{namespace}/{name}' {kind} data"
    private = editor.private_folder(PRIVATE_PREFIX)
    try:
        home = {"HOME": NO_HOME, "XDG_CONFIG_HOME": f"{NO_HOME}/.config"}  # stable: sops names it in errors
        env = sops_environment(private, {"SOPS_AGE_KEY": identities, **home})
        argv = [binary(), "decrypt", "--ignore-mac", "--filename-override", "object.json"]
        argv += ["--input-type", "json", "--output-type", "json"]
        result = local().run(
            argv, stdin=json.dumps(obj).encode(), env=env, timeout=TIMEOUT, check=False, inherit_env=False
        )
    except CommandError as exc:
        raise DecryptionError(f"{head}: {exc}") from None
    finally:
        shutil.rmtree(private, ignore_errors=True)
    if result.rc != 0:
        detail = (result.stderr or "").strip()
        if "Failed to get the data key" in detail:
            detail = f"cannot get sops data key: {detail}"
        elif "Error unmarshalling" in detail or "could not unmarshal" in detail.lower():
            detail = f"failed to load encrypted JSON data: {detail}"
        else:
            detail = f"error decrypting sops tree: {detail}"
        raise DecryptionError(f"{head}: {detail}")
    try:
        out = json.loads(result.stdout)
    except ValueError as exc:
        raise DecryptionError(
            f"failed to unmarshal decrypted '{namespace}/{name}' {kind} to JSON: {exc}"
        ) from None
    out.pop("sops", None)
    return out
