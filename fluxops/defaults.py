"""The settings a repository gets without an ``invoke.yaml`` of its own (its ``fluxops:`` section overrides
them key by key); the same values this repository's ``invoke.yaml`` writes out with their comments."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    "inventory": "inventory/hosts.yaml",
    "clusters": {},
    "key_dir": "~/.config/sops/age",
    "accept_new_host_key": False,
    "timeouts": {"connect": 10, "command": 600},
    "sandbox": {"inventory": "inventory/sandbox.yaml", "dir": ".sandbox", "subnet": "10.250.0.0/24"},
}
