// src/fabric/tlp — the transaction layer: TLP codec (this file), spec checks, splitting,
// completions and the request/completion endpoint. It may import src/common and src/fabric's
// own files (clock); nothing of link/, wire/ or switch/.

/**
 * PCIe Transaction Layer Packets: the wire constants, one typed shape per TLP
 * kind, and the codec.
 *
 * Byte layout (PCIe Base Specification §2.2; all multi-byte fields big-endian,
 * a DW is 4 bytes):
 *
 *   DW0, every TLP
 *     byte 0   Fmt[2:0] Type[4:0]                   = TlpType (Msg/MsgD: Type[2:0] is the routing)
 *     byte 1   T9 | TC[2:0] | T8 | Attr[2] | LN | TH
 *     byte 2   TD | EP | Attr[1:0] | AT[1:0] | Length[9:8]
 *     byte 3   Length[7:0]                          in DW, 0 means 1024
 *   Memory request (MRd, MWr)
 *     bytes 4-5  Requester ID    byte 6  Tag[7:0]    byte 7  Last DW BE[3:0] | First DW BE[3:0]
 *     3 DW: bytes 8-11  Address[31:2] | PH[1:0]
 *     4 DW: bytes 8-15  Address[63:2] | PH[1:0]
 *   Configuration request (CfgRd0/1, CfgWr0/1), 3 DW
 *     bytes 4-7  as a memory request (Length 1, Last BE 0)
 *     bytes 8-9  Completer ID (bus 8 | device 5 | function 3)
 *     byte 10    Extended Register Number[3:0] in the low nibble
 *     byte 11    Register Number[5:0] << 2
 *   Completion (Cpl, CplD), 3 DW
 *     bytes 4-5  Completer ID   byte 6  Status[2:0] | BCM | Byte Count[11:8]   byte 7  Byte Count[7:0] (0 means 4096)
 *     bytes 8-9  Requester ID   byte 10 Tag[7:0]   byte 11 R | Lower Address[6:0]
 *   Message (Msg, MsgD), always 4 DW
 *     bytes 4-5  Requester ID   byte 6  Tag   byte 7  Message Code
 *     bytes 8-15 depend on the routing: an address, a target ID in bytes 8-9, or vendor data
 *   Then Length DW of data (MWr, CfgWr, CplD, MsgD), then one DW of ECRC when TD is set.
 *
 * Data is kept DW-aligned as on the wire: `data[0]` is the byte at the DW
 * address, and the byte enables (or, for completions, the lower address and
 * byte count) say which bytes count.
 *
 * Not modelled: TLP prefixes, TPH (TH/PH), LN, AT, I/O and locked requests.
 * TH/PH/LN/AT are written as 0 and ignored when read; an ECRC is skipped on
 * decode and never generated (the PCIeOE frame CRC protects the wire).
 */

import { type Decoded, decoded, failed } from '../result.ts';
import { encodeSlab } from '../slab.ts';

/** Fmt and Type as the first header byte. */
export const enum TlpType {
  MRd32 = 0x00,
  MRd64 = 0x20,
  MWr32 = 0x40,
  MWr64 = 0x60,
  CfgRd0 = 0x04,
  CfgWr0 = 0x44,
  CfgRd1 = 0x05,
  CfgWr1 = 0x45,
  Cpl = 0x0a,
  CplD = 0x4a,
  /** 4 DW, no data; the low 3 bits carry MsgRouting. */
  Msg = 0x30,
  /** 4 DW with data; the low 3 bits carry MsgRouting. */
  MsgD = 0x70,
}

/** Fmt bit 6 of byte 0: the TLP has a data payload. */
const FMT_DATA = 0x40;
/** Fmt bit 5 of byte 0: the header is 4 DW. */
const FMT_4DW = 0x20;

export const enum CplStatus {
  /** Successful Completion */
  SC = 0,
  /** Unsupported Request */
  UR = 1,
  /** Configuration Request Retry Status */
  CRS = 2,
  /** Completer Abort */
  CA = 4,
}

/** Type[2:0] of a message: how the switch fabric routes it. */
export const enum MsgRouting {
  ToRootComplex = 0,
  ByAddress = 1,
  ById = 2,
  BroadcastFromRoot = 3,
  Local = 4,
  GatheredToRoot = 5,
}

/** Message codes used by the lab (PCIe Base Spec §2.2.8). */
export const enum MsgCode {
  Unlock = 0x00,
  PmPme = 0x18,
  AssertIntA = 0x20,
  AssertIntB = 0x21,
  AssertIntC = 0x22,
  AssertIntD = 0x23,
  DeassertIntA = 0x24,
  DeassertIntB = 0x25,
  DeassertIntC = 0x26,
  DeassertIntD = 0x27,
  ErrCor = 0x30,
  ErrNonFatal = 0x31,
  ErrFatal = 0x33,
  SetSlotPowerLimit = 0x50,
  VendorDefined0 = 0x7e,
  VendorDefined1 = 0x7f,
}

/** Attr bits as one 3-bit number: Attr[2] sits in byte 1, Attr[1:0] in byte 2. */
export const enum TlpAttr {
  NoSnoop = 1,
  RelaxedOrdering = 2,
  IdBasedOrdering = 4,
}

interface TlpCommon {
  /** Traffic class, 0-7. */
  tc: number;
  /** TlpAttr bits, 0-7. */
  attr: number;
  /** EP: the data is poisoned. */
  poisoned: boolean;
}

interface RequestCommon extends TlpCommon {
  /** Bus/device/function of the requester. */
  requesterId: number;
  /** 10-bit tag (T9, T8, Tag[7:0]). */
  tag: number;
  firstBe: number;
  lastBe: number;
}

export interface MemReadTlp extends RequestCommon {
  type: TlpType.MRd32 | TlpType.MRd64;
  /** Byte address of the first DW; bits 1:0 are zero. */
  address: bigint;
  /** Requested length in DW, 1-1024. */
  length: number;
}

export interface MemWriteTlp extends RequestCommon {
  type: TlpType.MWr32 | TlpType.MWr64;
  address: bigint;
  /** Whole DWs; the Length field is data.length / 4. */
  data: Uint8Array;
}

interface ConfigCommon extends RequestCommon {
  /** Bus/device/function addressed. */
  completerId: number;
  /** DW number in configuration space, 0-1023 (byte offset / 4). */
  register: number;
}

export interface ConfigReadTlp extends ConfigCommon {
  type: TlpType.CfgRd0 | TlpType.CfgRd1;
}

export interface ConfigWriteTlp extends ConfigCommon {
  type: TlpType.CfgWr0 | TlpType.CfgWr1;
  /** One DW. */
  data: Uint8Array;
}

interface CompletionCommon extends TlpCommon {
  completerId: number;
  requesterId: number;
  tag: number;
  status: CplStatus;
  /** Byte Count Modified (set only by PCI-X completers). */
  bcm: boolean;
  /** Bytes still to be returned for the request, this completion included: 1-4096. */
  byteCount: number;
  /** Address bits 6:0 of the first byte returned. */
  lowerAddress: number;
}

export interface CplTlp extends CompletionCommon {
  type: TlpType.Cpl;
}

export interface CplDTlp extends CompletionCommon {
  type: TlpType.CplD;
  data: Uint8Array;
}

interface MessageCommon extends TlpCommon {
  requesterId: number;
  tag: number;
  routing: MsgRouting;
  code: number;
  /** Header bytes 8-15: address, target ID in the top 16 bits, or vendor data, by routing. */
  routingData: bigint;
}

export interface MsgTlp extends MessageCommon {
  type: TlpType.Msg;
}

export interface MsgDTlp extends MessageCommon {
  type: TlpType.MsgD;
  data: Uint8Array;
}

export type Tlp =
  | MemReadTlp
  | MemWriteTlp
  | ConfigReadTlp
  | ConfigWriteTlp
  | CplTlp
  | CplDTlp
  | MsgTlp
  | MsgDTlp;

export type MemRequestTlp = MemReadTlp | MemWriteTlp;
export type ConfigTlp = ConfigReadTlp | ConfigWriteTlp;
export type CompletionTlp = CplTlp | CplDTlp;
export type MessageTlp = MsgTlp | MsgDTlp;
/** Requests that expect a completion. */
export type NonPostedTlp = MemReadTlp | ConfigTlp;

export const MAX_TLP_DATA_BYTES = 4096;
/** Largest header plus data plus ECRC. */
export const MAX_TLP_BYTES = 16 + MAX_TLP_DATA_BYTES + 4;

export function hasData(tlp: Tlp): tlp is MemWriteTlp | ConfigWriteTlp | CplDTlp | MsgDTlp {
  return (tlp.type & FMT_DATA) !== 0;
}

/** Length field in DW, as it appears on the wire (1-1024). */
export function tlpLength(tlp: Tlp): number {
  switch (tlp.type) {
    case TlpType.MRd32:
    case TlpType.MRd64:
      return tlp.length;
    case TlpType.CfgRd0:
    case TlpType.CfgRd1:
    case TlpType.Cpl:
    case TlpType.Msg:
      // Config requests always say 1; Cpl and Msg have no data and say 0 ("reserved").
      return tlp.type === TlpType.CfgRd0 || tlp.type === TlpType.CfgRd1 ? 1 : 0;
    default:
      return tlp.data.length >>> 2;
  }
}

function headerBytes(type: TlpType): number {
  return (type & FMT_4DW) !== 0 ? 16 : 12;
}

export function encodedSize(tlp: Tlp): number {
  return headerBytes(wireType(tlp)) + (hasData(tlp) ? tlp.data.length : 0);
}

function wireType(tlp: Tlp): number {
  return tlp.type === TlpType.Msg || tlp.type === TlpType.MsgD ? tlp.type | (tlp.routing & 7) : tlp.type;
}

/**
 * Encode into a new buffer (from a slab: not shared with anything else, but
 * not an ArrayBuffer of its own either). Throws RangeError on a TLP no wire
 * could carry (a program error).
 */
export function encodeTlp(tlp: Tlp): Buffer {
  const buf = encodeSlab.alloc(encodedSize(tlp));
  encodeTlpInto(tlp, buf, 0);
  return buf;
}

/** Encode at `offset` of `buf`; returns the number of bytes written. */
export function encodeTlpInto(tlp: Tlp, buf: Uint8Array, offset: number): number {
  const size = encodedSize(tlp);
  if (offset + size > buf.length) throw new RangeError('TLP does not fit in buffer');
  const length = tlpLength(tlp);
  if (hasData(tlp) && (tlp.data.length === 0 || (tlp.data.length & 3) !== 0 || tlp.data.length > MAX_TLP_DATA_BYTES)) {
    throw new RangeError(`TLP data must be 1-1024 whole DW, got ${tlp.data.length} bytes`);
  }
  if (length > 1024) throw new RangeError(`TLP length ${length} DW exceeds 1024`);
  const tag = 'tag' in tlp ? tlp.tag : 0;
  const b = buf;
  const o = offset;
  b[o] = wireType(tlp);
  b[o + 1] = ((tag & 0x200) >>> 2) | ((tlp.tc & 7) << 4) | ((tag & 0x100) >>> 5) | (tlp.attr & 4);
  b[o + 2] = (tlp.poisoned ? 0x40 : 0) | ((tlp.attr & 3) << 4) | ((length >>> 8) & 3);
  b[o + 3] = length & 0xff;
  switch (tlp.type) {
    case TlpType.MRd32:
    case TlpType.MRd64:
    case TlpType.MWr32:
    case TlpType.MWr64: {
      writeRequestDw1(b, o, tlp);
      if (tlp.type === TlpType.MRd64 || tlp.type === TlpType.MWr64) {
        writeU32(b, o + 8, Number((tlp.address >> 32n) & 0xffffffffn));
        writeU32(b, o + 12, Number(tlp.address & 0xfffffffcn));
      } else {
        if (tlp.address >= 0x1_0000_0000n) throw new RangeError('32-bit memory TLP with a 64-bit address');
        writeU32(b, o + 8, Number(tlp.address & 0xfffffffcn));
      }
      break;
    }
    case TlpType.CfgRd0:
    case TlpType.CfgRd1:
    case TlpType.CfgWr0:
    case TlpType.CfgWr1:
      writeRequestDw1(b, o, tlp);
      b[o + 8] = tlp.completerId >>> 8;
      b[o + 9] = tlp.completerId & 0xff;
      b[o + 10] = (tlp.register >>> 6) & 0x0f;
      b[o + 11] = (tlp.register & 0x3f) << 2;
      break;
    case TlpType.Cpl:
    case TlpType.CplD:
      b[o + 4] = tlp.completerId >>> 8;
      b[o + 5] = tlp.completerId & 0xff;
      b[o + 6] = ((tlp.status & 7) << 5) | (tlp.bcm ? 0x10 : 0) | ((tlp.byteCount >>> 8) & 0x0f);
      b[o + 7] = tlp.byteCount & 0xff;
      b[o + 8] = tlp.requesterId >>> 8;
      b[o + 9] = tlp.requesterId & 0xff;
      b[o + 10] = tlp.tag & 0xff;
      b[o + 11] = tlp.lowerAddress & 0x7f;
      break;
    case TlpType.Msg:
    case TlpType.MsgD:
      b[o + 4] = tlp.requesterId >>> 8;
      b[o + 5] = tlp.requesterId & 0xff;
      b[o + 6] = tlp.tag & 0xff;
      b[o + 7] = tlp.code & 0xff;
      writeU32(b, o + 8, Number((tlp.routingData >> 32n) & 0xffffffffn));
      writeU32(b, o + 12, Number(tlp.routingData & 0xffffffffn));
      break;
  }
  if (hasData(tlp)) b.set(tlp.data, o + headerBytes(wireType(tlp) as TlpType));
  return size;
}

function writeRequestDw1(b: Uint8Array, o: number, tlp: RequestCommon): void {
  b[o + 4] = tlp.requesterId >>> 8;
  b[o + 5] = tlp.requesterId & 0xff;
  b[o + 6] = tlp.tag & 0xff;
  b[o + 7] = ((tlp.lastBe & 0xf) << 4) | (tlp.firstBe & 0xf);
}

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

export type TlpDecodeError = 'truncated' | 'unsupported-type' | 'length-mismatch';

/**
 * Decode one TLP that fills `bytes` exactly. Data fields are views into
 * `bytes`, not copies: the caller owns the buffer and must not reuse it while
 * the TLP is alive.
 */
export function decodeTlp(bytes: Uint8Array): Decoded<Tlp, TlpDecodeError> {
  const b = bytes;
  if (b.length < 12) return failed('truncated', `${b.length} bytes is shorter than a 3 DW header`);
  const raw = b[0]!;
  const isMsg = (raw & 0xb8) === TlpType.Msg; // 0x30-0x37 or 0x70-0x77: routing in the low bits
  const type = (isMsg ? raw & 0xf8 : raw) as TlpType;
  if (!isKnownType(type)) return failed('unsupported-type', `Fmt/Type 0x${raw.toString(16).padStart(2, '0')}`);
  const hdr = headerBytes(type);
  if (b.length < hdr) return failed('truncated', `${b.length} bytes is shorter than a ${hdr / 4} DW header`);
  const b1 = b[1]!;
  const b2 = b[2]!;
  const lengthField = ((b2 & 3) << 8) | b[3]!;
  const withData = (type & FMT_DATA) !== 0;
  const dataBytes = withData ? (lengthField === 0 ? 1024 : lengthField) * 4 : 0;
  const digest = (b2 & 0x80) !== 0 ? 4 : 0;
  const expected = hdr + dataBytes + digest;
  if (b.length < expected) return failed('truncated', `${b.length} bytes, header and Length need ${expected}`);
  if (b.length > expected) return failed('length-mismatch', `${b.length} bytes, header and Length need ${expected}`);
  const tc = (b1 >>> 4) & 7;
  const attr = (b1 & 4) | ((b2 >>> 4) & 3);
  const poisoned = (b2 & 0x40) !== 0;
  const tag = ((b1 & 0x80) << 2) | ((b1 & 0x08) << 5) | b[6]!;
  const data = withData ? b.subarray(hdr, hdr + dataBytes) : undefined;
  // Each kind is built as one object literal (no spread of shared fields): every TLP received is decoded, and
  // a spread copies property by property into an object of a new shape.
  switch (type) {
    case TlpType.MRd32:
    case TlpType.MRd64:
    case TlpType.MWr32:
    case TlpType.MWr64: {
      const address =
        hdr === 16
          ? (BigInt(readU32(b, 8)) << 32n) | BigInt((readU32(b, 12) & 0xfffffffc) >>> 0)
          : BigInt((readU32(b, 8) & 0xfffffffc) >>> 0);
      const requesterId = (b[4]! << 8) | b[5]!;
      const firstBe = b[7]! & 0xf;
      const lastBe = b[7]! >>> 4;
      return type === TlpType.MRd32 || type === TlpType.MRd64
        ? decoded({ type, tc, attr, poisoned, requesterId, tag, firstBe, lastBe, address, length: lengthField === 0 ? 1024 : lengthField })
        : decoded({ type, tc, attr, poisoned, requesterId, tag, firstBe, lastBe, address, data: data! });
    }
    case TlpType.CfgRd0:
    case TlpType.CfgRd1:
    case TlpType.CfgWr0:
    case TlpType.CfgWr1: {
      const requesterId = (b[4]! << 8) | b[5]!;
      const firstBe = b[7]! & 0xf;
      const lastBe = b[7]! >>> 4;
      const completerId = (b[8]! << 8) | b[9]!;
      const register = ((b[10]! & 0xf) << 6) | (b[11]! >>> 2);
      return type === TlpType.CfgRd0 || type === TlpType.CfgRd1
        ? decoded({ type, tc, attr, poisoned, requesterId, tag, firstBe, lastBe, completerId, register })
        : decoded({ type, tc, attr, poisoned, requesterId, tag, firstBe, lastBe, completerId, register, data: data! });
    }
    case TlpType.Cpl:
    case TlpType.CplD: {
      const count = ((b[6]! & 0xf) << 8) | b[7]!;
      const completerId = (b[4]! << 8) | b[5]!;
      const status = (b[6]! >>> 5) as CplStatus;
      const bcm = (b[6]! & 0x10) !== 0;
      const byteCount = count === 0 ? 4096 : count;
      const requesterId = (b[8]! << 8) | b[9]!;
      // A completion's Tag[7:0] is in byte 10; T9 and T8 are in DW0 as for a request.
      const cplTag = ((b1 & 0x80) << 2) | ((b1 & 0x08) << 5) | b[10]!;
      const lowerAddress = b[11]! & 0x7f;
      return type === TlpType.Cpl
        ? decoded({ type, tc, attr, poisoned, completerId, status, bcm, byteCount, requesterId, tag: cplTag, lowerAddress })
        : decoded({ type, tc, attr, poisoned, completerId, status, bcm, byteCount, requesterId, tag: cplTag, lowerAddress, data: data! });
    }
    case TlpType.Msg:
    case TlpType.MsgD: {
      const requesterId = (b[4]! << 8) | b[5]!;
      const routing = (raw & 7) as MsgRouting;
      const code = b[7]!;
      const routingData = (BigInt(readU32(b, 8)) << 32n) | BigInt(readU32(b, 12));
      return type === TlpType.Msg
        ? decoded({ type, tc, attr, poisoned, requesterId, tag, routing, code, routingData })
        : decoded({ type, tc, attr, poisoned, requesterId, tag, routing, code, routingData, data: data! });
    }
  }
}

function isKnownType(t: number): t is TlpType {
  switch (t) {
    case TlpType.MRd32: case TlpType.MRd64: case TlpType.MWr32: case TlpType.MWr64:
    case TlpType.CfgRd0: case TlpType.CfgRd1: case TlpType.CfgWr0: case TlpType.CfgWr1:
    case TlpType.Cpl: case TlpType.CplD: case TlpType.Msg: case TlpType.MsgD:
      return true;
    default:
      return false;
  }
}

export function isMemRequest(tlp: Tlp): tlp is MemRequestTlp {
  return (tlp.type & 0x1f) === 0;
}

export function isConfigRequest(tlp: Tlp): tlp is ConfigTlp {
  return (tlp.type & 0x1e) === 0x04;
}

export function isCompletion(tlp: Tlp): tlp is CompletionTlp {
  return (tlp.type & 0x1f) === 0x0a;
}

export function isMessage(tlp: Tlp): tlp is MessageTlp {
  return tlp.type === TlpType.Msg || tlp.type === TlpType.MsgD;
}

export function isNonPosted(tlp: Tlp): tlp is NonPostedTlp {
  return tlp.type === TlpType.MRd32 || tlp.type === TlpType.MRd64 || isConfigRequest(tlp);
}

/** The 32-bit form below 4 GiB, as the spec requires of requesters. */
export function memReadType(address: bigint): TlpType.MRd32 | TlpType.MRd64 {
  return address >= 0x1_0000_0000n ? TlpType.MRd64 : TlpType.MRd32;
}

export function memWriteType(address: bigint): TlpType.MWr32 | TlpType.MWr64 {
  return address >= 0x1_0000_0000n ? TlpType.MWr64 : TlpType.MWr32;
}

