// The QEMU command line of one lab VM. Pure: paths and artefacts in, argv out.
import type { DeviceSpec, VmSpec } from './topology.ts';

export type Accel = 'tcg' | 'kvm';

export interface VmFiles {
  qmp: string;
  agent: string;
  console: string;
  pidfile: string;
  /** Disk image of a QEMU-emulated device, by device id. */
  disk: (id: string) => string;
  /** vfio-user socket of a device, by its `server` reference. */
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

export function qemuArgs(vm: VmSpec, accel: Accel, image: GuestImage, files: VmFiles): string[] {
  const args = [
    '-name', `${vm.name},process=lab-${vm.name}`,
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    // vfio-user servers map guest RAM: it must be a shareable memfd.
    '-object', `memory-backend-memfd,id=mem,size=${vm.memory},share=on`,
    '-machine', 'q35,memory-backend=mem',
    '-m', vm.memory,
    '-smp', String(vm.cpus),
    ...(accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,thread=multi', '-cpu', 'max']),
    '-kernel', image.kernel,
    '-initrd', image.initrd,
    '-append', `console=ttyS0 panic=-1 quiet lab.name=${vm.name}`,
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
        args.push('-drive', `file=${files.disk(d.id)},if=none,id=${d.id}-drive,format=raw,cache=none`);
        args.push('-device', `nvme,id=${d.id},serial=${nvmeSerial(vm.name, d.id)},drive=${d.id}-drive,bus=${bus}`);
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
