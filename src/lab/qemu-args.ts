// The QEMU command line of one lab VM. Pure: paths and artefacts in, argv out.
import { createHash } from 'node:crypto';
import type { DeviceSpec, VmSpec } from './topology.ts';

export type Accel = 'tcg' | 'kvm';

export interface VmFiles {
  qmp: string;
  agent: string;
  console: string;
  pidfile: string;
  /** Disk image of a QEMU-emulated device, by device id. */
  disk: (id: string) => string;
  /** QEMU's own end of a NIC's datagram cable to the port `server`. */
  nicSocket: (server: string) => string;
  /** Socket served by a lab process, by a device's `server` reference. */
  socket: (server: string) => string;
}

export interface GuestImage {
  kernel: string;
  initrd: string;
}

/** NVMe serial numbers must be unique per controller and at most 20 characters. */
export function nvmeSerial(vm: string, id: string): string {
  return `${vm}-${id}`.slice(0, 20);
}

/** The NIC's MAC: as given, or derived from VM and NIC names (locally administered, stable). */
export function nicMac(vm: string, nic: { id: string; mac?: string }): string {
  if (nic.mac) return nic.mac.toLowerCase();
  const h = createHash('sha256').update(`${vm}/${nic.id}`).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export function qemuArgs(vm: VmSpec, accel: Accel, image: GuestImage, files: VmFiles): string[] {
  const args = [
    '-name', `${vm.name},process=lab-${vm.name}`,
    // Reboots reboot (`lab reboot`); a kernel panic halts (no panic=) and `lab` reads it off the console.
    '-nodefaults', '-no-user-config', '-display', 'none',
    // vfio-user servers map guest RAM: it must be a shareable memfd.
    '-object', `memory-backend-memfd,id=mem,size=${vm.memory},share=on`,
    '-machine', 'q35,memory-backend=mem',
    '-m', vm.memory,
    '-smp', String(vm.cpus),
    ...(accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,thread=multi', '-cpu', 'max']),
    '-kernel', image.kernel,
    '-initrd', image.initrd,
    // no_timer_check: under TCG on a loaded host the kernel's early IO-APIC timer test can miss
    // its window and panic ("IO-APIC + timer doesn't work!"); the emulated timer is fine.
    '-append', `console=ttyS0 quiet no_timer_check lab.name=${vm.name}`,
    '-chardev', `file,id=console,path=${files.console}`,
    '-serial', 'chardev:console',
    '-chardev', `socket,id=agent,path=${files.agent},server=on,wait=off`,
    '-serial', 'chardev:agent',
    '-qmp', `unix:${files.qmp},server=on,wait=off`,
    '-pidfile', files.pidfile,
  ];
  // Every slot-bearing port needs a unique (chassis, slot) pair.
  let chassis = 1;
  const rootPort = (id: string) => {
    args.push('-device', `pcie-root-port,id=${id},chassis=${chassis++},slot=0`);
    return id;
  };
  const placement = (d: Exclude<DeviceSpec, { type: 'pcie-switch' }>) => d.bus ?? rootPort(`${d.id}-port`);
  for (const d of vm.devices) {
    switch (d.type) {
      case 'pcie-switch': {
        const up = rootPort(`${d.id}-port`);
        args.push('-device', `x3130-upstream,id=${d.id},bus=${up}`);
        const c = chassis++;
        for (let s = 0; s < d.slots; s++) args.push('-device', `xio3130-downstream,id=${d.id}.${s},bus=${d.id},chassis=${c},slot=${s}`);
        break;
      }
      case 'nvme': {
        const bus = placement(d);
        args.push('-drive', `file=${files.disk(d.id)},if=none,id=${d.id}-drive,format=raw,cache=${qemuNvmeCache()}`);
        args.push('-device', `nvme,id=${d.id},serial=${nvmeSerial(vm.name, d.id)},drive=${d.id}-drive,bus=${bus}`);
        break;
      }
      case 'nic': {
        const bus = placement(d);
        // A datagram "cable": QEMU sends from its own socket to the switch port's socket.
        args.push('-netdev', `dgram,id=${d.id}-net,local.type=unix,local.path=${files.nicSocket(d.server)},remote.type=unix,remote.path=${files.socket(d.server)}`);
        args.push('-device', `virtio-net-pci,id=${d.id},netdev=${d.id}-net,mac=${nicMac(vm.name, d)},bus=${bus}`);
        break;
      }
      case 'vfio-user': {
        const bus = placement(d);
        // Only the JSON form of -device parses the nested socket object.
        args.push('-device', JSON.stringify({ driver: 'vfio-user-pci', id: d.id, bus, socket: { type: 'unix', path: files.socket(d.server) } }));
        break;
      }
    }
  }
  return args;
}

/**
 * Host cache mode of QEMU's own nvme drives: none (O_DIRECT, the default), or writeback
 * from LAB_QEMU_NVME_CACHE — the NVMe model's semantics (writes land in the page cache,
 * Flush syncs), which benchmarks set to compare like with like.
 */
function qemuNvmeCache(): 'none' | 'writeback' {
  const c = process.env.LAB_QEMU_NVME_CACHE ?? 'none';
  if (c !== 'none' && c !== 'writeback') throw new Error(`LAB_QEMU_NVME_CACHE=${c}: expected none or writeback`);
  return c;
}
