"""The Ansible-style runner: playbooks of plays and tasks, modules as facts and plans, check mode, recap."""
