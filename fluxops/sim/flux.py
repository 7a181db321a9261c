"""``python -m fluxops.sim.flux``: the simulator's flux (see :mod:`fluxops.sim.cli_flux`)."""

from fluxops.sim.cli_flux import entry

if __name__ == "__main__":
    entry()
