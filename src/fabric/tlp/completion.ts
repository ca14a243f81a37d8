/**
 * Completions a completer sends back for non-posted requests: the single
 * completion factories and the split of a read's data at the Read Completion
 * Boundary (PCIe Base Spec §2.3.1.1).
 */

import { leadingDisabled, requestByteCount, requestLowerAddress } from './byte-enables.ts';
import { isPow2Size } from './split.ts';
import {
  CplStatus,
  type CompletionTlp,
  type CplDTlp,
  type CplTlp,
  type MemReadTlp,
  type NonPostedTlp,
  TlpType,
} from './tlp.ts';

function header(req: NonPostedTlp, completerId: number) {
  return {
    tc: req.tc,
    // Completions keep the request's Relaxed Ordering and No Snoop; IDO is the completer's choice (left off).
    attr: req.attr & 3,
    poisoned: false,
    completerId,
    requesterId: req.requesterId,
    tag: req.tag,
    bcm: false,
  };
}

function isMemRead(req: NonPostedTlp): req is MemReadTlp {
  return req.type === TlpType.MRd32 || req.type === TlpType.MRd64;
}

/** Byte count and lower address of the one completion answering a whole request. */
function wholeRequest(req: NonPostedTlp): { byteCount: number; lowerAddress: number } {
  // Configuration requests always report 4 bytes at lower address 0.
  return isMemRead(req)
    ? { byteCount: requestByteCount(req.length, req.firstBe, req.lastBe), lowerAddress: requestLowerAddress(req.address, req.firstBe) }
    : { byteCount: 4, lowerAddress: 0 };
}

/**
 * Successful completion of `req` in one TLP. Reads need `data` (the request's
 * whole DW span); a configuration write gets a Cpl without data.
 */
export function completionFor(req: NonPostedTlp, completerId: number, data?: Uint8Array): CompletionTlp {
  const fields = { ...header(req, completerId), status: CplStatus.SC, ...wholeRequest(req) };
  if (req.type === TlpType.CfgWr0 || req.type === TlpType.CfgWr1) return { type: TlpType.Cpl, ...fields };
  const want = isMemRead(req) ? req.length * 4 : 4;
  if (!data || data.length !== want) throw new RangeError(`read completion needs ${want} data bytes, got ${data?.length ?? 0}`);
  return { type: TlpType.CplD, ...fields, data };
}

/** A completion without data and a failure status (UR, CA, or CRS for configuration requests). */
export function errorCompletionFor(req: NonPostedTlp, completerId: number, status: CplStatus): CplTlp {
  return { type: TlpType.Cpl, ...header(req, completerId), status, ...wholeRequest(req) };
}

export function urCompletionFor(req: NonPostedTlp, completerId: number): CplTlp {
  return errorCompletionFor(req, completerId, CplStatus.UR);
}

export interface CompletionLimits {
  /** Read Completion Boundary in bytes: 64 or 128. */
  rcb: 64 | 128;
  /** Max Payload Size in bytes. */
  maxPayload: number;
}

/**
 * Successful completions for a memory read, as a completer splits them: each
 * carries at most Max Payload Size, and every one but the last ends on an RCB
 * boundary. `data` is the request's whole DW span (req.length * 4 bytes).
 */
export function completionsForRead(req: MemReadTlp, completerId: number, data: Uint8Array, limits: CompletionLimits): CplDTlp[] {
  if (data.length !== req.length * 4) throw new RangeError(`read of ${req.length} DW needs ${req.length * 4} data bytes, got ${data.length}`);
  if (!isPow2Size(limits.maxPayload)) throw new RangeError(`max payload ${limits.maxPayload} is not a power of two in 128-4096`);
  const base = Number(req.address & 0xfffn); // the request stays inside one 4 KiB page
  const total = requestByteCount(req.length, req.firstBe, req.lastBe);
  const first = base + leadingDisabled(req.firstBe); // base is DW-aligned: its low bits are the lower address's
  const end = first + total;
  const attr = req.attr & 3; // as header() keeps them
  const out: CplDTlp[] = [];
  let at = first;
  while (at < end) {
    const dwStart = at & ~3;
    // The largest RCB-aligned end that keeps the DW payload within MPS.
    const limit = Math.floor((dwStart + limits.maxPayload) / limits.rcb) * limits.rcb;
    const stop = Math.min(end, limit);
    const dwEnd = (stop + 3) & ~3;
    // One literal, not header()'s fields spread in: this runs for every CplD of a device's DMA read.
    out.push({
      type: TlpType.CplD,
      tc: req.tc,
      attr,
      poisoned: false,
      completerId,
      requesterId: req.requesterId,
      tag: req.tag,
      bcm: false,
      status: CplStatus.SC,
      byteCount: end - at,
      lowerAddress: at & 0x7f,
      data: data.subarray(dwStart - base, dwEnd - base),
    });
    at = stop;
  }
  return out;
}
