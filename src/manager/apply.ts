// How the manager carries an assignment out in a running lab (facts: design notes §7):
//   map:   the DI maps the function into the host's channel ({"map":...} on its control
//          socket), the HI serves the slot's endpoint from it ({"map":...}; it answers once
//          the endpoint's socket exists), then QMP device_add puts a vfio-user-pci into the
//          host's free xio3130 downstream slot, and the guest's pciehp probes it (≈ 0.8 s).
//   unmap: the guest lets go first, as with a real hot-plug controller: the guest's pciehp
//          powers the slot off (`echo 0 > /sys/bus/pci/slots/N/power` through the lab's guest
//          agent: the nvme driver unbinds, in-flight I/O ends with an error, and the slot's
//          Power Controller going off makes QEMU unplug the device at once). A guest without
//          the agent gets QMP device_del instead: the attention button, ≈ 6 s with its 5 s
//          wait. Once QEMU has removed the device, the HI and then the DI drop the mapping. A
//          guest that does not let go within the time limit fails the unmap, the mapping stays.
//   QEMU 11.1.3 aborts finalizing a removed vfio-user-pci that has an MSI-X capability
//   (hw/vfio-user/pci.c: vfio_user_instance_finalize deletes the PBA region from its BAR
//   after QOM has already finalized the BAR's MemoryRegion, which emptied it: assertion
//   `subregion->container == mr`). Measured: with MSI-X visible device_del and the guest's
//   slot power-off both abort QEMU; without it the power-off leaves QEMU running (device_del
//   ends in the same unplug, not measured without MSI-X). So the HI hides MSI-X of
//   hot-plugged functions and they run on MSI (src/hi/hotplug-control.ts).
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentExec } from '../lab/agent.ts';
import { controlCall } from '../lab/control-client.ts';
import type { Fabric } from '../lab/derive.ts';
import { qmp } from '../lab/qmp.ts';
import type { LabState } from '../lab/state.ts';
import type { Applier } from './manager.ts';
import type { Assignment } from './table.ts';

export interface LabApplierOptions {
  /** How long a guest may take to release a device (default 20 s: the 5 s button wait, TCG). */
  releaseTimeoutMs?: number;
  /** How long the guest agent may take to answer before the guest counts as not responding. */
  agentProbeMs?: number;
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
      agent: vm.agent,
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
    const end = Date.now() + limit;
    const notReleased = (why: string) => new Error(`${a.host} did not release ${a.di}/${a.function} (${w.eep}) within ${limit / 1000} s (${why}); the mapping stays`);
    const present = async () => {
      const l = await qmp(w.qmp, 'qom-list', { path: '/machine/peripheral' });
      return ((l.return ?? []) as { name: string }[]).some((p) => p.name === w.eep);
    };
    // Already gone (a retry after the guest let go): only the mapping is left to drop.
    if (await present()) {
      await this.release(a, w, end, notReleased);
      while (await present()) {
        if (Date.now() > end) throw notReleased('QEMU still has the device');
        await sleep(50);
      }
    }
    await controlCall(w.hi.who, w.hi.control, { unmap: { eep: w.eep } });
    await controlCall(w.di.who, w.di.control, { unmap: { function: a.function, channel: w.channel } });
  }

  /** Has the guest power the slot off (agent), or presses the attention button (device_del). */
  private async release(a: Assignment, w: ReturnType<LabApplier['where']>, end: number, notReleased: (why: string) => Error): Promise<void> {
    const bus = w.agent ? findSecondaryBus(await qmp(w.qmp, 'query-pci'), `hisw.${a.slot}`) : undefined;
    if (w.agent && bus !== undefined) {
      // A guest that does not answer now is not asked to power off later, when it wakes:
      // the unmap has failed by then and the mapping must stay what the manager reported.
      const probeMs = Math.min(this.o.agentProbeMs ?? 5_000, Math.max(end - Date.now(), 1));
      await agentExec(w.agent, 'true', { timeoutMs: probeMs }).catch((err: Error) => {
        throw notReleased(`its agent did not answer: ${err.message}`);
      });
      const address = `0000:${bus.toString(16).padStart(2, '0')}:00`;
      const r = await agentExec(w.agent, powerOffSlot(address), { timeoutMs: Math.max(end - Date.now(), 1) }).catch((err: Error) => {
        throw notReleased(`powering slot ${address} off: ${err.message}`);
      });
      if (r.status === 0) return;
      if (r.status !== NO_SUCH_SLOT) throw notReleased(`powering slot ${address} off: exit ${r.status} ${r.stderr.trim()}`);
      // The guest has no slot there (no pciehp on it): the attention button it is.
    }
    const r = await qmp(w.qmp, 'device_del', { id: w.eep });
    if (r.error) throw new Error(`${a.host}: device_del ${w.eep}: ${r.error.desc}`);
  }
}

const NO_SUCH_SLOT = 3;

/** Guest script: the pciehp slot at `address` (domain:bus:device) powered off; exit 3 if there is none. */
function powerOffSlot(address: string): string {
  return [
    `for s in /sys/bus/pci/slots/*; do [ "$(cat "$s/address" 2>/dev/null)" = "${address}" ] && [ -e "$s/power" ] || continue`,
    `  [ "$(cat "$s/power")" = 0 ] || echo 0 > "$s/power"; exit $?`,
    `done; exit ${NO_SUCH_SLOT}`,
  ].join('\n');
}

interface PciDeviceInfo {
  qdev_id?: string;
  pci_bridge?: { bus: { secondary: number }; devices?: PciDeviceInfo[] };
}

/** The secondary bus number the guest gave the bridge `id` (query-pci), if it has one yet. */
export function findSecondaryBus(reply: { return?: unknown }, id: string): number | undefined {
  const walk = (devices: PciDeviceInfo[]): number | undefined => {
    for (const d of devices) {
      if (d.qdev_id === id) return d.pci_bridge?.bus.secondary || undefined;
      const below = d.pci_bridge?.devices && walk(d.pci_bridge.devices);
      if (below !== undefined) return below;
    }
    return undefined;
  };
  for (const bus of (reply.return ?? []) as { devices: PciDeviceInfo[] }[]) {
    const found = walk(bus.devices);
    if (found !== undefined) return found;
  }
  return undefined;
}
