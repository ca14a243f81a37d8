// How the manager carries an assignment out in a running lab (facts: design notes §7):
//   map:   the DI maps the function into the host's channel ({"map":...} on its control
//          socket), the HI serves the slot's endpoint from it ({"map":...}; it answers once
//          the endpoint's socket exists), then QMP device_add puts a vfio-user-pci into the
//          host's free xio3130 downstream slot, and the guest's pciehp probes it (≈ 0.8 s).
//   unmap: the guest lets go first: QMP device_del presses the slot's attention button and
//          the guest powers the slot down (≈ 6 s with the 5 s button wait); once QEMU has
//          removed the device, the HI and then the DI drop the mapping. A guest that does not
//          let go within the time limit fails the unmap and the mapping stays.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { controlCall } from '../lab/control-client.ts';
import type { Fabric } from '../lab/derive.ts';
import { qmp } from '../lab/qmp.ts';
import type { LabState } from '../lab/state.ts';
import type { Applier } from './manager.ts';
import type { Assignment } from './table.ts';

export interface LabApplierOptions {
  /** How long a guest may take to release a device (default 20 s: the 5 s button wait, TCG). */
  releaseTimeoutMs?: number;
}

export class LabApplier implements Applier {
  constructor(
    private readonly fabric: Fabric,
    /** The lab as it is now (lab.json): VMs' QMP sockets, processes' socket directories. */
    private readonly lab: () => LabState,
    private readonly o: LabApplierOptions = {},
  ) {}

  /** Everything a change needs to name, looked up once. */
  private where(a: Assignment) {
    const host = this.fabric.hosts.find((h) => h.host === a.host);
    const di = this.fabric.dis.find((d) => d.process === a.di);
    const fn = di?.functions.find((f) => f.name === a.function);
    if (!host || !di || !fn) throw new Error(`${a.di}/${a.function} → ${a.host}: not in this lab's topology`);
    const state = this.lab();
    const vm = state.vms.find((v) => v.name === a.host);
    const dir = (p: string) => state.processes.find((x) => x.name === p)?.socketDir;
    const hiDir = dir(host.process);
    const diDir = dir(di.process);
    if (!vm || !hiDir || !diDir) throw new Error(`${a.host}: its VM, HI or DI is not running`);
    const eep = `eep${a.slot}`;
    return {
      eep,
      channel: host.channels[di.process]!,
      bdf: fn.bdf,
      qmp: vm.qmp,
      hi: { who: `HI ${host.process}`, control: join(hiDir, 'control.sock'), socket: join(hiDir, `${eep}.sock`) },
      di: { who: `DI ${di.process}`, control: join(diDir, 'control.sock') },
    };
  }

  async map(a: Assignment): Promise<void> {
    const w = this.where(a);
    await controlCall(w.di.who, w.di.control, { map: { function: a.function, channel: w.channel, bdf: w.bdf } });
    await controlCall(w.hi.who, w.hi.control, { map: { eep: w.eep, channel: w.channel, bdf: w.bdf } }, 60_000);
    const r = await qmp(w.qmp, 'device_add', { driver: 'vfio-user-pci', id: w.eep, bus: `hisw.${a.slot}`, socket: { type: 'unix', path: w.hi.socket } });
    if (r.error) throw new Error(`${a.host}: device_add ${w.eep} into hisw.${a.slot}: ${r.error.desc}`);
  }

  async unmap(a: Assignment): Promise<void> {
    const w = this.where(a);
    const limit = this.o.releaseTimeoutMs ?? 20_000;
    const r = await qmp(w.qmp, 'device_del', { id: w.eep });
    if (r.error) throw new Error(`${a.host}: device_del ${w.eep}: ${r.error.desc}`);
    const present = async () => {
      const l = await qmp(w.qmp, 'qom-list', { path: '/machine/peripheral' });
      return ((l.return ?? []) as { name: string }[]).some((p) => p.name === w.eep);
    };
    for (const end = Date.now() + limit; await present(); await sleep(100)) {
      if (Date.now() > end) throw new Error(`${a.host} did not release ${a.di}/${a.function} (${w.eep}) within ${limit / 1000} s; the mapping stays`);
    }
    await controlCall(w.hi.who, w.hi.control, { unmap: { eep: w.eep } });
    await controlCall(w.di.who, w.di.control, { unmap: { function: a.function, channel: w.channel } });
  }
}
