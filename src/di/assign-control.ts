/**
 * The DI's half of live assignment, on its control socket (the manager sends these; see
 * src/manager/apply.ts):
 *   {"map":{"function":"fn1","channel":2,"bdf":"01:00.1"}}   give fn1 to the host on channel 2
 *   {"unmap":{"function":"fn1","channel":2}}                  take it back (after the host let go)
 * Repeating a request that is already in effect answers ok; taking a function from a host
 * that does not hold it, or giving one that another host holds, is refused.
 */

import { z } from 'zod';
import { formatBdf, parseBdf } from '../pci/bdf.ts';
import type { DeviceInterface } from './di.ts';

const fn = z.string().min(1);
const channel = z.number().int().min(1).max(0xffff);
const Request = z.union([
  z.strictObject({ map: z.strictObject({ function: fn, channel, bdf: z.string() }) }),
  z.strictObject({ unmap: z.strictObject({ function: fn, channel }) }),
]);

/** Returns undefined for requests that are not map/unmap (another handler's). */
export function assignControl(di: DeviceInterface) {
  return (raw: unknown): Record<string, unknown> | undefined => {
    if (typeof raw !== 'object' || raw === null || !('map' in raw || 'unmap' in raw)) return undefined;
    const req = Request.parse(raw);
    const name = 'map' in req ? req.map.function : req.unmap.function;
    if (!di.function(name)) throw new Error(`no function ${name}`);
    const held = di.assignmentOf(name);
    if ('map' in req) {
      const bdf = parseBdf(req.map.bdf);
      if (held && held.channel === req.map.channel && held.hostBdf === bdf) return { function: name, channel: held.channel };
      if (held) throw new Error(`${name} is held by channel ${held.channel} (as ${formatBdf(held.hostBdf)})`);
      di.assign(name, req.map.channel, bdf);
      return { function: name, channel: req.map.channel };
    }
    if (!held) return { function: name, channel: null };
    if (held.channel !== req.unmap.channel) throw new Error(`${name} is held by channel ${held.channel}, not ${req.unmap.channel}`);
    di.unassign(name);
    return { function: name, channel: null };
  };
}
