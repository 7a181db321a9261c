"""``invoke bootstrap``: a node that ``node.up`` brought up, left with Flux reconciling the repository.

Modules, in the order bootstrap uses them: ``target`` (the cluster's git URL, branch, path and
server from the inventory and the tree), ``node`` (kubectl and flux on the node, over any
:class:`fluxops.shell.Shell`), ``preflight_local``, ``preflight_remote``, ``key`` (the ``sops-age``
Secret, through stdin), ``flux`` (install, GitRepository, entry Kustomization), ``phases`` (levels of
the dependsOn graph, reconciled level by level), ``status``, ``plan`` (``--check``), ``run`` (the whole
flow) and ``view`` (live display and tables). docs/bootstrap.md describes the flow.
"""
