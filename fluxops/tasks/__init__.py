"""invoke Collections, one module per namespace; ``namespace()`` assembles them."""

from __future__ import annotations

from invoke import Collection


def namespace() -> Collection:
    """The root collection that ``tasks.py`` exposes."""
    from fluxops.tasks import inventory, sandbox

    ns = Collection()
    ns.add_collection(Collection.from_module(inventory, name="inventory"))
    ns.add_collection(Collection.from_module(sandbox, name="sandbox"))
    return ns
