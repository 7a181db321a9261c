"""invoke entry point: the task namespace lives in fluxops.tasks."""

from fluxops.tasks import namespace

ns = namespace()
