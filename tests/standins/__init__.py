"""Stand-ins for the k3s and flux executables (real k3s and flux cannot run on the test machine).

``artifacts.build`` lays them out in an artifact folder as the releases lay out their files, with
checksum files, so ``playbooks/node.yaml`` installs them exactly as it installs the real ones.
"""
