#!/usr/bin/python3
"""A stand-in for the flux CLI (Python 3 standard library): ``flux --version``, ``flux version
--client`` and ``flux check --pre`` answer as flux does; every call appends its argv to
/run/fluxops-stand-in/flux-calls.jsonl."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

VERSION = "0.0.0"  # replaced when the artifact folder is built
CALLS = Path("/run/fluxops-stand-in/flux-calls.jsonl")


def main(argv: list[str]) -> int:
    """Answer the few commands a node's bring-up and its checks use."""
    CALLS.parent.mkdir(parents=True, exist_ok=True)
    with CALLS.open("a") as log:
        log.write(json.dumps({"argv": argv, "pid": os.getpid(), "time": time.time()}) + "\n")
    args = argv[1:]
    if args in (["--version"], ["-v"]):
        print(f"flux version {VERSION}")
        return 0
    if args[:2] == ["version", "--client"]:
        print(f"flux: v{VERSION}")
        return 0
    if args[:2] == ["check", "--pre"]:
        print("► checking prerequisites\n✔ Kubernetes 1.33.5+k3s1 >=1.32.0-0\n✔ prerequisites checks passed")
        return 0
    print(f"stand-in flux: {' '.join(args) or '(no command)'} is not emulated", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
