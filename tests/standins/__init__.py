"""The artifact folder node bring-up installs on sandbox hosts (real k3s and flux cannot run on the test
machine): ``artifacts.build`` lays out the simulator's ``k3s`` and ``flux`` (:mod:`fluxops.sim`) as the
releases lay out their files, with checksum files, so ``playbooks/node.yaml`` installs them exactly as
it installs the real ones.
"""
