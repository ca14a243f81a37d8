/**
 * PCIeOE discovery and management messages: how the manager (a station on the lab switch)
 * finds HIs and DIs, learns what they have, and tells them what to map. Each message is
 * the payload of one Discovery (type 4) or Management (type 5) frame (frame.ts) on
 * channel 0, which no HI↔DI association uses. They are not sequenced: the manager repeats
 * a request until the matching Ack (same request id) arrives, and applying a request twice
 * gives the same state (map what is already mapped: Ack ok).
 *
 * Every message starts with the same 4 bytes (big-endian):
 *
 *   off  size  field
 *    0    1    kind (MgmtKind)
 *    1    1    reserved, 0
 *    2    2    request id: a reply carries the id of the request it answers
 *   -- body, per kind (below) --
 *
 * Strings are 1 byte of length then that many bytes of UTF-8 (names: at most 63 bytes).
 * A BDF is 2 bytes: bus[15:8] | device[7:3] | function[2:0].
 *
 *   Solicit (0x01, Discovery; manager → broadcast): "who is there"
 *     4   str  manager name
 *   Announce (0x02, Discovery; HI or DI → manager): the answer, followed by its report
 *     4   1    role: 1 HI, 2 DI
 *     5   1    links to the switch
 *     6   1    HI: slots; DI: functions
 *     7   str  station name
 *   Heartbeat (0x03, Discovery; HI or DI → the manager that solicited it): sent on each link
 *   every heartbeat interval, so the manager tells a lost station (or a lost link) by silence
 *     4   4    epoch: drawn at random (non-zero) when the station starts; a new one: it restarted
 *     8   2    generation: counts changes of the station's report (the manager asks again when it moves)
 *    10   1    link: which of the station's links this one is
 *   FunctionReport (0x10, Management; DI → manager): one entry per function, 12 bytes + name
 *     4   1    count
 *     5        entries: index(1) vendor(2) device(2) class code(3) holder channel(2, 0: none)
 *                       holder BDF(2) name(str)
 *   SlotReport (0x11, Management; HI → manager): one entry per slot, 6 bytes
 *     4   1    count
 *     5        entries: slot(1) state(1: 0 free, 1 mapped, 2 releasing, 3 lost) channel(2) BDF(2)
 *                       (lost: mapped, but the DI went silent past the timeout; the slot shows
 *                       the host a surprise removal until the DI is back)
 *   MapFunction (0x20, Management; manager → DI): give function `index` to the host on `channel` as `bdf`
 *     4   1    function index
 *     5   2    channel
 *     7   2    BDF
 *   UnmapFunction (0x21, Management; manager → DI)
 *     4   1    function index
 *     5   2    channel
 *   MapSlot (0x22, Management; manager → HI): serve slot `slot` from the function at `bdf` on `channel`
 *     4   1    slot
 *     5   2    channel
 *     7   2    BDF
 *   UnmapSlot (0x23, Management; manager → HI): release the slot (the guest first)
 *     4   1    slot
 *     5   2    time limit for the guest's release, ms (0: the station's default)
 *   Ack (0x30, Management; HI or DI → manager): the outcome of a Map/Unmap request
 *     4   1    status (AckStatus)
 *     5   str  detail ("" when ok)
 */

import { type Decoded, decoded, failed } from '../result.ts';
import { FrameType, decodeFrame, encodeFrame } from './frame.ts';
import type { Mac } from './mac.ts';

export const MANAGEMENT_CHANNEL = 0;

export const enum MgmtKind {
  Solicit = 0x01,
  Announce = 0x02,
  Heartbeat = 0x03,
  FunctionReport = 0x10,
  SlotReport = 0x11,
  MapFunction = 0x20,
  UnmapFunction = 0x21,
  MapSlot = 0x22,
  UnmapSlot = 0x23,
  Ack = 0x30,
}

export const enum StationRole {
  Hi = 1,
  Di = 2,
}

export const enum SlotState {
  Free = 0,
  Mapped = 1,
  Releasing = 2,
  /** Mapped, but its DI is gone (surprise removal shown to the host). */
  Lost = 3,
}

export const enum AckStatus {
  Ok = 0,
  /** No such function or slot. */
  Unknown = 1,
  /** The function or slot is held by someone else. */
  Busy = 2,
  /** The guest did not release the device in time; the mapping stays. */
  Timeout = 3,
  /** Anything else; the detail says what. */
  Failed = 4,
}

export interface Solicit { kind: MgmtKind.Solicit; id: number; manager: string }
export interface Announce { kind: MgmtKind.Announce; id: number; role: StationRole; links: number; count: number; name: string }
export interface Heartbeat { kind: MgmtKind.Heartbeat; id: number; epoch: number; generation: number; link: number }
export interface FunctionEntry {
  index: number;
  vendor: number;
  device: number;
  /** 24-bit class code (base class, subclass, programming interface). */
  classCode: number;
  /** 0: nobody holds it. */
  holderChannel: number;
  holderBdf: number;
  name: string;
}
export interface FunctionReport { kind: MgmtKind.FunctionReport; id: number; functions: FunctionEntry[] }
export interface SlotEntry { slot: number; state: SlotState; channel: number; bdf: number }
export interface SlotReport { kind: MgmtKind.SlotReport; id: number; slots: SlotEntry[] }
export interface MapFunction { kind: MgmtKind.MapFunction; id: number; index: number; channel: number; bdf: number }
export interface UnmapFunction { kind: MgmtKind.UnmapFunction; id: number; index: number; channel: number }
export interface MapSlot { kind: MgmtKind.MapSlot; id: number; slot: number; channel: number; bdf: number }
export interface UnmapSlot { kind: MgmtKind.UnmapSlot; id: number; slot: number; timeoutMs: number }
export interface Ack { kind: MgmtKind.Ack; id: number; status: AckStatus; detail: string }

export type MgmtMessage = Solicit | Announce | Heartbeat | FunctionReport | SlotReport | MapFunction | UnmapFunction | MapSlot | UnmapSlot | Ack;
export type MgmtDecodeError = 'truncated' | 'unknown-kind' | 'bad-field';

const HEADER = 4;
const MAX_NAME = 63;

/** Writes bytes front to back; throws on values that do not fit (a bug in the caller, not bad input). */
class Writer {
  private readonly parts: number[] = [];
  u8(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`${v} does not fit a byte`);
    this.parts.push(v);
    return this;
  }
  u16(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${v} does not fit 16 bits`);
    return this.u8(v >>> 8).u8(v & 0xff);
  }
  u24(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffff) throw new RangeError(`${v} does not fit 24 bits`);
    return this.u8(v >>> 16).u16(v & 0xffff);
  }
  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${v} does not fit 32 bits`);
    return this.u16(Math.floor(v / 0x10000)).u16(v % 0x10000);
  }
  str(s: string, max = 255): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > max) throw new RangeError(`"${s}" is longer than ${max} bytes`);
    this.u8(b.length);
    for (const x of b) this.parts.push(x);
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** Reads untrusted bytes front to back; `undefined` once it runs past the end. */
class Reader {
  private o = HEADER;
  constructor(private readonly b: Uint8Array) {}
  u8(): number | undefined {
    return this.o < this.b.length ? this.b[this.o++] : ((this.o = Infinity), undefined);
  }
  u16(): number | undefined {
    const hi = this.u8();
    const lo = this.u8();
    return hi === undefined || lo === undefined ? undefined : (hi << 8) | lo;
  }
  u24(): number | undefined {
    const hi = this.u8();
    const lo = this.u16();
    return hi === undefined || lo === undefined ? undefined : hi * 0x10000 + lo;
  }
  u32(): number | undefined {
    const hi = this.u16();
    const lo = this.u16();
    return hi === undefined || lo === undefined ? undefined : hi * 0x10000 + lo;
  }
  str(): string | undefined {
    const n = this.u8();
    if (n === undefined || this.o + n > this.b.length) return (this.o = Infinity), undefined;
    const s = Buffer.from(this.b.buffer, this.b.byteOffset + this.o, n).toString('utf8');
    this.o += n;
    return s;
  }
  get overrun(): boolean {
    return this.o === Infinity;
  }
}

const head = (kind: MgmtKind, id: number) => new Writer().u8(kind).u8(0).u16(id);

// ---- one codec per kind: encodeX builds the payload, the matching branch of decodeManagement reads it ----

export const encodeSolicit = (m: Omit<Solicit, 'kind'>) => head(MgmtKind.Solicit, m.id).str(m.manager, MAX_NAME).bytes();

export const encodeAnnounce = (m: Omit<Announce, 'kind'>) =>
  head(MgmtKind.Announce, m.id).u8(m.role).u8(m.links).u8(m.count).str(m.name, MAX_NAME).bytes();

export const encodeHeartbeat = (m: Omit<Heartbeat, 'kind'>) => head(MgmtKind.Heartbeat, m.id).u32(m.epoch).u16(m.generation).u8(m.link).bytes();

export function encodeFunctionReport(m: Omit<FunctionReport, 'kind'>): Uint8Array {
  const w = head(MgmtKind.FunctionReport, m.id).u8(m.functions.length);
  for (const f of m.functions) w.u8(f.index).u16(f.vendor).u16(f.device).u24(f.classCode).u16(f.holderChannel).u16(f.holderBdf).str(f.name, MAX_NAME);
  return w.bytes();
}

export function encodeSlotReport(m: Omit<SlotReport, 'kind'>): Uint8Array {
  const w = head(MgmtKind.SlotReport, m.id).u8(m.slots.length);
  for (const s of m.slots) w.u8(s.slot).u8(s.state).u16(s.channel).u16(s.bdf);
  return w.bytes();
}

export const encodeMapFunction = (m: Omit<MapFunction, 'kind'>) => head(MgmtKind.MapFunction, m.id).u8(m.index).u16(m.channel).u16(m.bdf).bytes();
export const encodeUnmapFunction = (m: Omit<UnmapFunction, 'kind'>) => head(MgmtKind.UnmapFunction, m.id).u8(m.index).u16(m.channel).bytes();
export const encodeMapSlot = (m: Omit<MapSlot, 'kind'>) => head(MgmtKind.MapSlot, m.id).u8(m.slot).u16(m.channel).u16(m.bdf).bytes();
export const encodeUnmapSlot = (m: Omit<UnmapSlot, 'kind'>) => head(MgmtKind.UnmapSlot, m.id).u8(m.slot).u16(m.timeoutMs).bytes();
export const encodeAck = (m: Omit<Ack, 'kind'>) => head(MgmtKind.Ack, m.id).u8(m.status).str(m.detail).bytes();

/** Any message, by its kind. */
export function encodeManagement(m: MgmtMessage): Uint8Array {
  switch (m.kind) {
    case MgmtKind.Solicit: return encodeSolicit(m);
    case MgmtKind.Announce: return encodeAnnounce(m);
    case MgmtKind.Heartbeat: return encodeHeartbeat(m);
    case MgmtKind.FunctionReport: return encodeFunctionReport(m);
    case MgmtKind.SlotReport: return encodeSlotReport(m);
    case MgmtKind.MapFunction: return encodeMapFunction(m);
    case MgmtKind.UnmapFunction: return encodeUnmapFunction(m);
    case MgmtKind.MapSlot: return encodeMapSlot(m);
    case MgmtKind.UnmapSlot: return encodeUnmapSlot(m);
    case MgmtKind.Ack: return encodeAck(m);
  }
}

/** The frame type a message travels in: discovery for Solicit, Announce and Heartbeat, management for the rest. */
export const frameTypeOf = (kind: MgmtKind): 4 | 5 => (kind === MgmtKind.Solicit || kind === MgmtKind.Announce || kind === MgmtKind.Heartbeat ? 4 : 5);

/** Decodes an untrusted payload. Never throws. */
export function decodeManagement(b: Uint8Array): Decoded<MgmtMessage, MgmtDecodeError> {
  if (b.length < HEADER) return failed('truncated', `${b.length} bytes is shorter than the 4-byte message header`);
  const kind = b[0]!;
  const id = (b[2]! << 8) | b[3]!;
  const r = new Reader(b);
  let m: MgmtMessage | undefined;
  switch (kind) {
    case MgmtKind.Solicit:
      m = { kind, id, manager: r.str()! };
      break;
    case MgmtKind.Announce: {
      const role = r.u8()!;
      m = { kind, id, role, links: r.u8()!, count: r.u8()!, name: r.str()! };
      if (!r.overrun && role !== StationRole.Hi && role !== StationRole.Di) return failed('bad-field', `role ${role}`);
      break;
    }
    case MgmtKind.Heartbeat:
      m = { kind, id, epoch: r.u32()!, generation: r.u16()!, link: r.u8()! };
      break;
    case MgmtKind.FunctionReport: {
      const n = r.u8() ?? 0;
      const functions: FunctionEntry[] = [];
      for (let i = 0; i < n && !r.overrun; i++)
        functions.push({ index: r.u8()!, vendor: r.u16()!, device: r.u16()!, classCode: r.u24()!, holderChannel: r.u16()!, holderBdf: r.u16()!, name: r.str()! });
      m = { kind, id, functions };
      break;
    }
    case MgmtKind.SlotReport: {
      const n = r.u8() ?? 0;
      const slots: SlotEntry[] = [];
      for (let i = 0; i < n && !r.overrun; i++) {
        const slot = r.u8()!;
        const state = r.u8()!;
        slots.push({ slot, state, channel: r.u16()!, bdf: r.u16()! });
        if (!r.overrun && state > SlotState.Lost) return failed('bad-field', `slot ${slot}: state ${state}`);
      }
      m = { kind, id, slots };
      break;
    }
    case MgmtKind.MapFunction:
      m = { kind, id, index: r.u8()!, channel: r.u16()!, bdf: r.u16()! };
      break;
    case MgmtKind.UnmapFunction:
      m = { kind, id, index: r.u8()!, channel: r.u16()! };
      break;
    case MgmtKind.MapSlot:
      m = { kind, id, slot: r.u8()!, channel: r.u16()!, bdf: r.u16()! };
      break;
    case MgmtKind.UnmapSlot:
      m = { kind, id, slot: r.u8()!, timeoutMs: r.u16()! };
      break;
    case MgmtKind.Ack: {
      const status = r.u8()!;
      m = { kind, id, status, detail: r.str()! };
      if (!r.overrun && status > AckStatus.Failed) return failed('bad-field', `status ${status}`);
      break;
    }
    default:
      return failed('unknown-kind', `message kind 0x${kind.toString(16).padStart(2, '0')}`);
  }
  if (r.overrun) return failed('truncated', `kind 0x${kind.toString(16).padStart(2, '0')}: ${b.length} bytes end inside the body`);
  return decoded(m);
}

/** A message in its frame: untagged, on the management channel, outside any channel's numbering. */
export function encodeManagementFrame(dst: Mac, src: Mac, m: MgmtMessage): Buffer {
  return encodeFrame({ dst, src, vlan: null, type: frameTypeOf(m.kind) as FrameType, flags: 0, channel: MANAGEMENT_CHANNEL, seq: 0, ack: 0, credits: 0 }, encodeManagement(m));
}

/** The sender and message of a discovery or management frame; never throws. */
export function decodeManagementFrame(buf: Uint8Array): Decoded<{ src: Mac; dst: Mac; message: MgmtMessage }, MgmtDecodeError | 'not-management'> {
  const f = decodeFrame(buf);
  if (!f.ok) return failed('not-management', `${f.error}: ${f.detail}`);
  if ((f.value.type !== FrameType.Discovery && f.value.type !== FrameType.Management) || f.value.channel !== MANAGEMENT_CHANNEL)
    return failed('not-management', `frame type ${f.value.type} on channel ${f.value.channel}`);
  const m = decodeManagement(f.value.payload);
  if (!m.ok) return m;
  if (frameTypeOf(m.value.kind) !== f.value.type) return failed('bad-field', `kind 0x${m.value.kind.toString(16)} in a frame of type ${f.value.type}`);
  return decoded({ src: f.value.src, dst: f.value.dst, message: m.value });
}
