"""``python -m fluxops``: the ``fluxops`` command."""

from fluxops.cli import main

main()
