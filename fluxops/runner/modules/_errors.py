"""The error a module raises from ``plan`` when the host cannot be brought to the wanted state."""

from __future__ import annotations

from fluxops.errors import FluxopsError


class ModuleError(FluxopsError):
    """A task cannot be planned: a tool, unit or file missing on the host, a read-only kernel setting,
    a local source that does not match its checksum. The message says what is missing and what to do;
    the runner reports it as the task's failure on that host.
    """
