#!/usr/bin/env bash
# Recipe: the lab's guest — Debian bookworm's cloud kernel plus a Debian root file system
# (fio, nvme-cli, pciutils, iperf3, iproute2, ethtool, kmod) packed as a zstd initramfs.
# An initramfs boots faster than a disk under TCG and leaves every guest disk free for the
# devices under test. The cache key covers this file, guest/init and guest/lab-agent.
# usage: guest-image.sh OUT_DIR MIRROR_URL   → OUT_DIR/{vmlinuz,initrd.zst,kernel-version}
set -euo pipefail
out=$1 mirror=$2
here=$(cd "$(dirname "$0")" && pwd)
root="$out/rootfs"
mmdebstrap --variant=minbase \
  --include=linux-image-cloud-amd64,fio,nvme-cli,pciutils,iperf3,iproute2,iputils-ping,ethtool,kmod,procps,busybox-static \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --dpkgopt='path-exclude=/usr/share/{man,doc,locale,info,lintian,bash-completion}/*' \
  --dpkgopt='path-exclude=/usr/share/zoneinfo/*' \
  bookworm "$root" "$mirror"

kver=$(ls "$root/lib/modules")
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
echo "$kver" > "$out/kernel-version"

# Keep only the modules the lab's guests load; the rest is dead weight in every boot.
mods="$root/lib/modules/$kver/kernel"
keep=(drivers/virtio drivers/net/virtio_net.ko drivers/net/net_failover.ko net/core/failover.ko
      drivers/block/virtio_blk.ko drivers/char/virtio_console.ko drivers/uio drivers/vfio
      drivers/nvme drivers/pci lib/crc-itu-t.ko lib/libcrc32c.ko crypto/crc32c_generic.ko
      arch/x86/crypto/crc32c-intel.ko drivers/net/tun.ko)
tmpmods=$(mktemp -d)
for k in "${keep[@]}"; do
  if [ -e "$mods/$k" ]; then mkdir -p "$tmpmods/$(dirname "$k")"; cp -a "$mods/$k" "$tmpmods/$k"; fi
done
rm -rf "$mods"; mv "$tmpmods" "$mods"; chmod 755 "$mods"
chroot "$root" depmod -a "$kver"

# Strip what a guest never runs: the image is unpacked into RAM at every boot.
rm -rf "$root"/boot/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
  "$root"/usr/lib/x86_64-linux-gnu/gconv "$root"/usr/share/perl "$root"/usr/lib/x86_64-linux-gnu/perl \
  "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale "$root"/usr/lib/firmware \
  "$root"/var/log/* "$root"/usr/share/info \
  "$root"/usr/lib/python3* "$root"/usr/bin/python3* "$root"/usr/lib/udev/hwdb.* \
  "$root"/usr/lib/x86_64-linux-gnu/perl-base "$root"/usr/lib/x86_64-linux-gnu/libperl* \
  "$root"/usr/lib/apt "$root"/var/lib/dpkg "$root"/var/cache/debconf
# Every tool the lab runs in guests must still find all of its libraries.
for tool in fio nvme lspci setpci iperf3 ip ping ethtool modprobe bash; do
  path=$(chroot "$root" sh -c "command -v $tool") || { echo "guest image: $tool is missing" >&2; exit 1; }
  if chroot "$root" ldd "$path" | grep 'not found'; then echo "guest image: $tool lacks libraries" >&2; exit 1; fi
done
# busybox-static supplies poweroff/reboot, which minbase lacks.
for t in poweroff reboot halt; do ln -sf /bin/busybox "$root/sbin/$t"; done
install -m 0755 "$here/guest/init" "$root/init"
install -m 0755 "$here/guest/lab-agent" "$root/usr/local/sbin/lab-agent"
mkdir -p "$root/root"

(cd "$root" && find . -xdev -print0 | cpio --null -o -H newc --quiet) | zstd -q -T0 -10 -o "$out/initrd.zst"
rm -rf "$root"
