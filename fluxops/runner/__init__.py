"""The Ansible-style runner: playbooks of plays and tasks, modules as facts and plans, check mode, recap.

``playbook`` loads and checks a file, ``validate`` checks it against the hosts, ``templating`` is
Jinja2, ``batch`` reads many facts in one round trip, ``execute`` runs plays on ``targets`` in
parallel, ``results`` and ``recap`` report. Modules live in ``modules/``, their contract in ``module``.
"""
