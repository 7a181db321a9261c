"""invoke Collections, one module per namespace; ``namespace()`` assembles them."""

from __future__ import annotations

import copy

from invoke import Collection


def namespace() -> Collection:
    """The root collection that ``tasks.py`` and the ``fluxops`` command expose.

    Its configuration carries the built-in settings (``fluxops.defaults``), so a repository without an
    ``invoke.yaml`` works; a repository's ``invoke.yaml`` overrides them key by key.
    """
    from fluxops.defaults import DEFAULTS
    from fluxops.tasks import bootstrap, demo, inventory, keys, layout, node, play, rehearse, sandbox, secrets

    ns = Collection()
    ns.configure({"fluxops": copy.deepcopy(DEFAULTS)})
    ns.add_task(demo.demo)
    ns.add_task(play.play)
    ns.add_task(rehearse.rehearse)
    ns.add_task(bootstrap.bootstrap)
    ns.add_task(bootstrap.reconcile)
    ns.add_task(bootstrap.status)
    ns.add_collection(Collection.from_module(inventory, name="inventory"))
    ns.add_collection(Collection.from_module(sandbox, name="sandbox"))
    ns.add_collection(Collection.from_module(keys, name="keys"))
    ns.add_collection(Collection.from_module(secrets, name="secrets"))
    ns.add_collection(Collection.from_module(layout, name="layout"))
    ns.add_collection(Collection.from_module(node, name="node"))
    return ns
