"""Secrets: age keys, sops runner, .sops.yaml rules, manifests, the encrypted-file rule, rotation."""
