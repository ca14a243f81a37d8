#!/usr/bin/env bash
# Runs a command inside the sid chroot, in a private mount namespace so the bind mounts
# vanish with the process (nothing to unmount, nothing left behind after a crash).
# Each BIND path is mounted at the same path inside, so file and socket paths mean the
# same thing on both sides. The command is exec'd: its PID is this script's PID.
# usage: run-in-sid.sh CHROOT BIND... -- COMMAND [ARG...]
set -euo pipefail
root=$1; shift
binds=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do binds+=("$1"); shift; done
[ "${1:-}" = "--" ] || { echo "run-in-sid: missing -- before the command" >&2; exit 2; }
shift
exec unshare --mount --propagation private -- /bin/sh -euc '
root=$1; shift
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
while [ "$1" != "--" ]; do
  mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
  shift
done
shift
exec chroot "$root" "$@"
' run-in-sid "$root" "${binds[@]}" -- "$@"
