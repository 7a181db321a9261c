"""``python -m fluxops.sim.kubectl``: the simulator's kubectl (see :mod:`fluxops.sim.cli_kubectl`)."""

from fluxops.sim.cli_kubectl import entry

if __name__ == "__main__":
    entry()
