"""``invoke demo``: the main job on the sandbox hosts, in a temporary workspace (``story``)."""
