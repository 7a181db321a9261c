"""The 20-task benchmark play for pyinfra: the same tasks as fluxops.yaml and ansible.yaml."""

from io import StringIO

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

D = "/srv/fluxops-bench"


def content(i: int) -> str:
    """The content of file-NN.conf, as fluxops.yaml and ansible.yaml spell it out (bench/play20.py checks
    that every tool leaves the same files)."""
    return "".join(
        f"# bench file {i:02d}, line {n}\nsetting_{i:02d}_{n} = {i * 100 + n}\n" for n in range(1, 5)
    )


for i in range(1, 11):
    files.put(name=f"file {i:02d}", src=StringIO(content(i)), dest=f"{D}/file-{i:02d}.conf", mode="644")

for i in range(1, 6):
    files.line(name=f"line {i}", path=f"{D}/lines.conf", line=f"^key{i} = .*$", replace=f"key{i} = value {i}")

for i in range(1, 6):
    marker = f"{D}/marker-{i}"
    if not host.get_fact(File, path=marker):  # pyinfra has no creates=: the marker is a fact
        server.shell(name=f"command {i}", commands=[f"hostname > {marker}"])
