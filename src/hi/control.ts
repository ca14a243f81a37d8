/**
 * The HI process's control socket, DIR/control.sock (line JSON, see
 * fabric/line-control.ts):
 *   {"stats":true}   → {"ok":true,"hi":{...},"eeps":{NAME:{...}},"channels":{ID:{"tlp":{...},"link":{...},"peerAlive":bool}}}
 *   {"forge":{"channel":1,"type":"CfgRd0","bdf":"01:00.1","register":0}}
 *   {"forge":{"channel":1,"type":"CfgWr0","bdf":"01:00.1","register":1,"data":"06000000","firstBe":3}}
 *   {"forge":{"channel":1,"type":"MRd64","address":"0x8000100000","length":1}}
 *   {"forge":{"channel":1,"type":"MWr64","address":"0x8000100000","data":"efbeadde"}}
 *       → {"ok":true,"outcome":"ur"|"ok"|...} (non-posted) or {"ok":true,"posted":true}
 *
 * `forge` sends a TLP of the caller's choosing on a channel, as a compromised
 * or buggy host would: the lab's isolation tests use it to show that the DI
 * rejects (UR) and counts whatever a host sends to a function it was not
 * given. It is a lab instrument — a real HI would not expose it — and it
 * reaches only what this HI's own channels reach.
 */

import { z } from 'zod';
import type { PcieoePort } from '../fabric/pcieoe-port.ts';
import { TlpType } from '../fabric/tlp/tlp.ts';
import { parseBdf } from '../pci/bdf.ts';
import type { HostInterface } from './hi.ts';
import type { RemoteFunction } from './remote-function/index.ts';

const hex = z.string().regex(/^([0-9a-fA-F]{2})*$/);
const Forge = z.strictObject({
  channel: z.number().int().min(0).max(0xffff),
  type: z.enum(['CfgRd0', 'CfgWr0', 'MRd64', 'MWr64']),
  bdf: z.string().optional(),
  register: z.number().int().min(0).max(1023).optional(),
  firstBe: z.number().int().min(0).max(15).optional(),
  address: z.string().regex(/^0x[0-9a-fA-F]+$/).optional(),
  length: z.number().int().min(1).max(1024).optional(),
  data: hex.optional(),
});
const Request = z.union([z.strictObject({ stats: z.literal(true) }), z.strictObject({ forge: Forge })]);

const bytes = (h: string | undefined, min: number) => {
  const b = Uint8Array.from((h ?? '').match(/../g) ?? [], (x) => parseInt(x, 16));
  if (b.length < min || b.length % 4) throw new Error(`data: a multiple of 4 bytes, at least ${min}`);
  return b;
};

export function hiControl(hi: HostInterface, eeps: () => RemoteFunction[], ports: readonly PcieoePort[]) {
  return async (raw: unknown): Promise<Record<string, unknown>> => {
    const req = Request.parse(raw);
    if ('stats' in req) {
      return {
        hi: hi.stats,
        eeps: Object.fromEntries(eeps().map((e) => [e.name, e.stats])),
        channels: Object.fromEntries(ports.map((p) => [p.id, p.stats])),
      };
    }
    const f = req.forge;
    const ep = hi.endpoint(f.channel);
    if (!ep) throw new Error(`no channel ${f.channel}`);
    const common = { tc: 0, attr: 0, poisoned: false, requesterId: 0 };
    if (f.type === 'CfgRd0' || f.type === 'CfgWr0') {
      if (!f.bdf || f.register === undefined) throw new Error('config: bdf and register');
      const cfg = { ...common, completerId: parseBdf(f.bdf), register: f.register, firstBe: f.firstBe ?? 0xf, lastBe: 0 };
      const o = await ep.request(f.type === 'CfgRd0' ? { type: TlpType.CfgRd0, ...cfg } : { type: TlpType.CfgWr0, ...cfg, data: bytes(f.data, 4).subarray(0, 4) });
      return { outcome: o.status, ...(o.status === 'ok' && o.data.length ? { data: Buffer.from(o.data).toString('hex') } : {}) };
    }
    if (!f.address) throw new Error('memory: address');
    const address = BigInt(f.address);
    if (f.type === 'MRd64') {
      const length = f.length ?? 1;
      const o = await ep.request({ type: TlpType.MRd64, ...common, address, length, firstBe: 0xf, lastBe: length > 1 ? 0xf : 0 });
      return { outcome: o.status };
    }
    const data = bytes(f.data, 4);
    ep.post({ type: TlpType.MWr64, ...common, tag: 0, address, firstBe: 0xf, lastBe: data.length > 4 ? 0xf : 0, data });
    return { posted: true };
  };
}
