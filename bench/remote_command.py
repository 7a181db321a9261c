"""Cost of one remote command through fluxops.shell, against plain fabric defaults.

Run (as root, needs the sandbox hosts):
    .venv/bin/invoke sandbox.up && .venv/bin/python bench/remote_command.py && .venv/bin/invoke sandbox.down
Prints the median over N runs of `true` on sandbox host n5 for each way of running it.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fluxops import inventory  # noqa: E402
from fluxops.shell import RemoteShell  # noqa: E402

N = 100


def median_ms(call: Callable[[], object], n: int = N) -> float:
    call()  # connection set up outside the measurement
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    import fabric

    host = inventory.load(REPO / "inventory" / "sandbox.yaml").host("n5")
    shell = RemoteShell(host)
    started = time.perf_counter()
    shell.run(["true"])
    first = (time.perf_counter() - started) * 1000
    ours = median_ms(lambda: shell.run(["true"]))
    shell.close()
    plain = fabric.Connection(
        host.address, user=host.user, port=host.port, connect_kwargs={"key_filename": str(host.key_file)}
    )
    plain.client.load_host_keys(str(host.known_hosts))
    default = median_ms(lambda: plain.run("true", hide=True))
    plain.close()
    print(f"host n5 ({host.address}:{host.port}), median of {N} runs of `true`")
    print(f"  fluxops.shell RemoteShell.run(['true'])    {ours:7.2f} ms")
    print(f"  first call, including the connection       {first:7.1f} ms")
    print(f"  fabric Connection.run('true'), defaults    {default:7.2f} ms")
    print(f"  speed-up                                   {default / ours:7.1f}x")


if __name__ == "__main__":
    main()
