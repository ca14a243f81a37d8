#!/usr/bin/env bash
# Recipe: a Debian sid chroot whose qemu-system-x86 (11.x) has the vfio-user-pci client.
# Bookworm's QEMU 7.2 lacks it, and sid's QEMU needs sid's glibc, hence a chroot rather
# than a package install on the host. The cache key is this file's hash: edit it and the
# chroot is rebuilt.
# usage: sid-chroot.sh OUT_DIR MIRROR_URL
set -euo pipefail
out=$1 mirror=$2
mmdebstrap --variant=minbase \
  --include=qemu-system-x86 \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --dpkgopt='path-exclude=/usr/share/{man,doc,locale,info}/*' \
  sid "$out" "$mirror"
# Mount points for the lab's bind mounts (see run-in-sid.sh).
mkdir -p "$out/dev" "$out/proc" "$out/sys"
qemu=$(chroot "$out" qemu-system-x86_64 --version | head -n1)
if ! chroot "$out" qemu-system-x86_64 -device help | grep -q '"vfio-user-pci"'; then
  echo "sid-chroot: $qemu has no vfio-user-pci device; the lab cannot run with it" >&2
  exit 1
fi
echo "$qemu" > "$out/.lab-qemu-version"
