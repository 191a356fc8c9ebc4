#!/usr/bin/env bash
# Install podman + podman-compose (and debootstrap for the local base images) on a Debian
# machine with no Docker engine, and give podman a configuration that works on VMs like
# our CI machines. Needs root. Idempotent: does nothing that is already done.
#
#   deploy/podman-setup.sh
#
# Why the configuration: podman's default runtime (crun) fails on cgroup v1/hybrid hosts
# ("cgroups in hybrid mode not supported") while runc works, and podman's default
# file-descriptor and process limits can be above the machine's hard limits, which makes
# every `podman run` fail. An existing /etc/containers/containers.conf is left alone.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
for tool in podman:podman runc:runc podman-compose:podman-compose debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if ((${#need[@]})); then
  # Wait for another apt run instead of failing on its lock.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi

conf=/etc/containers/containers.conf
if [ ! -e "$conf" ]; then
  mkdir -p /etc/containers
  # Keep the limits within the host's hard limits (podman asks for more by default).
  nofile=$(ulimit -Hn)
  if [ "$nofile" = unlimited ] || [ "$nofile" -gt 20000 ]; then nofile=20000; fi
  cat >"$conf" <<EOF
# Written by odradek deploy/podman-setup.sh
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  echo "wrote $conf"
fi
podman --version
podman-compose version 2>/dev/null | grep -m 1 -i "compose.* version" || true
