"""``python -m fluxops.sim.k3s``: the simulator's k3s (see :mod:`fluxops.sim.cli_k3s`)."""

from fluxops.sim.cli_k3s import entry

if __name__ == "__main__":
    entry()
