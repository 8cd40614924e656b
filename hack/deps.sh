#!/usr/bin/env bash
# Installs the Debian packages the tests and the lab run as real components:
# the OCI registry, OpenSSH (the simulated Mac hosts), the Docker engine
# (sidecars) and a static busybox for its test images, iproute2/iptables
# (host network namespaces), tmux (the status UI test), and gcc with libc6-dev
# (the pods' sandbox program). Only what is missing is installed.
set -euo pipefail

declare -A want=(
  [docker-registry]=docker-registry
  [sshd]=openssh-server
  [ssh-keygen]=openssh-client
  [dockerd]=docker.io
  [ip]=iproute2
  [iptables]=iptables
  [tmux]=tmux
  [busybox]=busybox-static
  [sudo]=sudo
  [gcc]=gcc
)
missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$cmd ]]; then
    missing+=("${want[$cmd]}")
  fi
done
# Sidecar test images are a static busybox alone; Debian's busybox package
# is linked dynamically and would not run in them.
if bb=$(command -v busybox) && ldd "$bb" >/dev/null 2>&1; then
  missing+=(busybox-static)
fi
# The pause program of the tests' pod sandboxes is linked statically.
if [[ ! -e /usr/lib/x86_64-linux-gnu/libc.a && ! -e /usr/lib/$(uname -m)-linux-gnu/libc.a ]]; then
  missing+=(libc6-dev)
fi
if ((${#missing[@]} == 0)); then
  echo "deps: all system packages present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start their daemons; the harness runs its own instances.
systemctl disable --now docker-registry docker ssh 2>/dev/null || true
echo "deps: installed ${missing[*]}"
