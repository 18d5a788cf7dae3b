#!/usr/bin/env bash
# Make podman able to build and run the app's image on a Debian host without a Docker engine (CI and
# the development machines). Only what is missing is done:
#  - the Debian packages podman, runc and debootstrap;
#  - /etc/containers/containers.conf (when absent): the runc runtime (crun fails on hosts whose cgroups
#    are in hybrid mode), the cgroupfs manager (no systemd), and default ulimits within the host's hard
#    limits (podman's own defaults ask for more nofile than such hosts allow).
# Needs root, as scripts/install-system-deps.sh does.
set -euo pipefail

need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: podman is needed to build the image and these Debian packages are missing: ${need[*]} (install them as root)" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null  # with recommends (fuse-overlayfs, catatonit, uidmap), as tested
fi

conf=/etc/containers/containers.conf
if [ ! -e "$conf" ] && [ "$(id -u)" -eq 0 ]; then
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nproc" = unlimited ] && nproc=1048576
  [ "$nproc" -gt 32768 ] && nproc=32768
  mkdir -p /etc/containers
  cat > "$conf" <<CONF
# Written by nstage's scripts/setup-podman.sh: runc (crun needs unified cgroups), no systemd,
# default ulimits within this host's hard limits.
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  echo "wrote $conf (runc, cgroupfs, nofile ${nofile}, nproc ${nproc})"
fi
