"""Secrets: age keys, the sops runner, .sops.yaml rules, secret manifests, the encrypted-file rule, rotation."""
