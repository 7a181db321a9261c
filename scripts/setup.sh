#!/usr/bin/env bash
# Set up fluxops on a fresh Debian machine: system packages the sandbox hosts need (systemd-nspawn
# containers booted from an overlay of /, so what they run must be installed here), then a
# virtualenv in .venv with the project, its binaries (sops, kubectl/kustomize) and test tools.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v ip >/dev/null || need_apt+=(iproute2)
[ -x /usr/bin/dbus-daemon ] || [ -x /usr/bin/dbus-broker ] || need_apt+=(dbus)
command -v git >/dev/null || need_apt+=(git)
command -v dot >/dev/null || need_apt+=(graphviz)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_apt[*]}; install them as root (apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The sandbox hosts share this machine's kernel: every systemd in them takes inotify instances from
# the same per-user limit (Debian's default 128 runs out with a few hosts), and the kernel-wide
# inotify limits k3s nodes get from playbooks/node.yaml can only be read, not set, inside a host.
raise_limit() {  # raise_limit NAME VALUE: set a kernel setting to at least VALUE
  local now
  now=$(sysctl -n "$1" 2>/dev/null || echo 0)
  if [ "$now" -lt "$2" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "setup: $1 is $now; the sandbox hosts need $2 (as root: sysctl -w $1=$2)" >&2
      return 0
    fi
    echo "setup: raising $1 from $now to $2 (the sandbox hosts share this machine's kernel)"
    sysctl -q -w "$1=$2"
  fi
}
raise_limit fs.inotify.max_user_instances 8192
raise_limit fs.inotify.max_user_watches 524288

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
echo "setup: installing fluxops and its dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "setup: done"
