/**
 * The HI's half of hot-plug, on its control socket (the manager sends these; see
 * src/manager/apply.ts):
 *   {"map":{"eep":"eep1","channel":2,"bdf":"01:00.1"}}   enumerate that remote function and serve
 *       it at DIR/eep1.sock; the reply comes once the socket exists (then QEMU may device_add it)
 *   {"unmap":{"eep":"eep1"}}   stop serving it (after the guest released it and QEMU removed it)
 * Mapping what is already mapped the same way answers ok, so a repeated request does no harm.
 * A mapped function is offered without its MSI-X capability when it has MSI (hideMsix): QEMU
 * 11.1.3 aborts finalizing a removed vfio-user-pci that has MSI-X (vfio_user_instance_finalize
 * deletes the PBA region from a BAR MemoryRegion QOM has already finalized and emptied:
 * "memory_region_del_subregion: Assertion `subregion->container == mr' failed"), so with
 * MSI-X no hot-plugged function could ever be removed. Linux's nvme driver runs on MSI; a
 * function without MSI keeps its INTx (carryIntx), which Linux's virtio_pci falls back to.
 */

import { join } from 'node:path';
import { z } from 'zod';
import { formatBdf, parseBdf } from '../pci/bdf.ts';
import type { VfioUserServer } from '../vfio-user/server.ts';
import type { HostInterface } from './hi.ts';
import type { RemoteFunction } from './remote-function/index.ts';

const eepName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/).refine((n) => n !== 'control' && n !== 'hictl', 'reserved name');
const Request = z.union([
  z.strictObject({ map: z.strictObject({ eep: eepName, channel: z.number().int().min(1).max(0xffff), bdf: z.string() }) }),
  z.strictObject({ unmap: z.strictObject({ eep: eepName }) }),
]);

export interface ServedEeps {
  /** EEPs served now, with their channel. */
  readonly eeps: Map<string, { eep: RemoteFunction; channel: number; server: VfioUserServer }>;
}

/** Returns undefined for requests that are not map/unmap (another handler's). */
export function hotplugControl(hi: HostInterface, dir: string, served: ServedEeps) {
  return (raw: unknown): Promise<Record<string, unknown>> | undefined => {
    if (typeof raw !== 'object' || raw === null || !('map' in raw || 'unmap' in raw)) return undefined;
    return (async () => {
      const req = Request.parse(raw);
      if ('map' in req) {
        const { eep: name, channel } = req.map;
        const bdf = parseBdf(req.map.bdf);
        const socket = join(dir, `${name}.sock`);
        const have = served.eeps.get(name);
        if (have) {
          if (have.channel === channel && have.eep.remoteBdf === bdf) return { eep: name, socket };
          throw new Error(`${name} serves ${formatBdf(have.eep.remoteBdf)} on channel ${have.channel} already`);
        }
        const eep = await hi.addEep(name, channel, bdf, { hideMsix: true, carryIntx: true });
        served.eeps.set(name, { eep, channel, server: hi.serve(eep, socket) });
        return { eep: name, socket };
      }
      const have = served.eeps.get(req.unmap.eep);
      if (!have) return { eep: req.unmap.eep, served: false };
      have.server.close();
      hi.removeEep(have.eep);
      served.eeps.delete(req.unmap.eep);
      return { eep: req.unmap.eep, served: false };
    })();
  };
}
