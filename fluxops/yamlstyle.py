"""The one ruamel.yaml round-trip set-up for files fluxops edits: comments, key order, quoting survive."""

from __future__ import annotations

from ruamel.yaml import YAML


def round_trip() -> YAML:
    """A round-trip YAML in the tree's style (2-space maps, lists indented under their key)."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml
