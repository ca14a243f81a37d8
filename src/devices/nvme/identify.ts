// Identify data structures (NVMe 1.4 §5.15.2), 4096 bytes each. Fields are
// chosen for the Linux 6.1 driver (design notes §5): LPA, OAES and CTRATT
// stay 0 so the driver sends no commands we do not implement; OACS offers
// only Doorbell Buffer Config.
import { createHash } from 'node:crypto';
import type { Namespace } from './namespace.ts';
import { LIMITS } from './registers.ts';

export const IDENTIFY_SIZE = 4096;

export const enum Cns {
  Namespace = 0x00,
  Controller = 0x01,
  ActiveNsList = 0x02,
  NsDescriptors = 0x03,
}

export interface ControllerIdentity {
  pciVendorId: number;
  subsystemVendorId: number;
  /** 20 ASCII characters at most, unique per controller. */
  serial: string;
  model: string;
  firmware: string;
  /** NVMe Qualified Name of the subsystem, unique per controller here (one controller per subsystem). */
  subnqn: string;
  cntlid: number;
  /** Number of namespaces (NN): the highest valid NSID. */
  nn: number;
}

/** Optional admin commands (OACS): Doorbell Buffer Config (bit 8), which lets the driver skip most doorbell writes. */
export const OACS = 1 << 8;
/** Optional NVM commands (ONCS): Dataset Management (bit 2) and Write Zeroes (bit 3). */
export const ONCS = (1 << 2) | (1 << 3);
/** Composite temperature thresholds, Kelvin. */
export const WCTEMP = 343;
export const CCTEMP = 373;
/** Error log entries kept (ELPE is 0-based). */
export const ERROR_LOG_ENTRIES = 4;

class Writer {
  readonly buf = new Uint8Array(IDENTIFY_SIZE);
  private readonly v = new DataView(this.buf.buffer);
  u8(at: number, x: number): this {
    this.v.setUint8(at, x);
    return this;
  }
  u16(at: number, x: number): this {
    this.v.setUint16(at, x, true);
    return this;
  }
  u32(at: number, x: number): this {
    this.v.setUint32(at, x >>> 0, true);
    return this;
  }
  u64(at: number, x: number): this {
    this.v.setUint32(at, x % 0x1_0000_0000, true);
    this.v.setUint32(at + 4, Math.floor(x / 0x1_0000_0000), true);
    return this;
  }
  /** ASCII, space padded (SN, MN, FR are not NUL terminated). */
  ascii(at: number, len: number, s: string): this {
    for (let i = 0; i < len; i++) this.buf[at + i] = i < s.length ? s.charCodeAt(i) & 0x7f : 0x20;
    return this;
  }
  /** UTF-8, NUL padded (SUBNQN). */
  utf8(at: number, len: number, s: string): this {
    this.buf.set(new TextEncoder().encode(s).subarray(0, len - 1), at);
    return this;
  }
  bytes(at: number, b: Uint8Array): this {
    this.buf.set(b, at);
    return this;
  }
}

export function identifyController(id: ControllerIdentity): Uint8Array {
  const w = new Writer()
    .u16(0, id.pciVendorId)
    .u16(2, id.subsystemVendorId)
    .ascii(4, 20, id.serial)
    .ascii(24, 40, id.model)
    .ascii(64, 8, id.firmware)
    .u8(72, 6) // RAB: 64 commands
    .u8(77, LIMITS.mdts)
    .u16(78, id.cntlid)
    .u32(80, LIMITS.version)
    .u8(111, 1) // CNTRLTYPE: I/O controller
    .u16(256, OACS)
    .u8(258, 3) // ACL: 4 concurrent Abort commands (0-based)
    .u8(259, 3) // AERL: 4 outstanding AERs (0-based)
    .u8(260, 0x03) // FRMW: slot 1 read-only, one slot
    .u8(262, ERROR_LOG_ENTRIES - 1) // ELPE
    .u16(266, WCTEMP)
    .u16(268, CCTEMP)
    .u8(512, (LIMITS.sqes << 4) | LIMITS.sqes) // SQES max | min
    .u8(513, (LIMITS.cqes << 4) | LIMITS.cqes)
    .u16(514, 0) // MAXCMD: only for fabrics
    .u32(516, id.nn)
    .u16(520, ONCS)
    .u8(525, 1) // VWC present: Flush matters
    .utf8(768, 256, id.subnqn);
  // Power state 0: 25 W (MP in 0.01 W), entry/exit latencies 0.
  w.u16(2048, 2500);
  return w.buf;
}

/** 16 bytes derived from the subsystem and NSID: the NGUID, stable across restarts. */
export function nsGuid(subnqn: string, nsid: number): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`${subnqn}/ns${nsid}`).digest().subarray(0, 16));
}

export function identifyNamespace(ns: Namespace, subnqn: string): Uint8Array {
  return new Writer()
    .u64(0, ns.blocks) // NSZE
    .u64(8, ns.blocks) // NCAP
    .u64(16, ns.blocks) // NUSE (no thin provisioning reported)
    .u8(24, 0) // NSFEAT
    .u8(25, 0) // NLBAF: one format (0-based)
    .u8(26, 0) // FLBAS: format 0, no metadata
    .bytes(104, nsGuid(subnqn, ns.nsid))
    .u32(128, ns.lbaShift << 16) // LBAF0: MS 0, LBADS, RP 0 (best)
    .buf;
}

/** Active namespace IDs greater than `after`, ascending, at most 1024. */
export function activeNsList(nsids: number[], after: number): Uint8Array {
  const w = new Writer();
  nsids
    .filter((n) => n > after)
    .sort((a, b) => a - b)
    .slice(0, IDENTIFY_SIZE / 4)
    .forEach((n, i) => w.u32(4 * i, n));
  return w.buf;
}

/** Namespace Identification Descriptor list: the NGUID (type 2) and a UUID (type 3). */
export function nsDescriptors(subnqn: string, nsid: number): Uint8Array {
  const nguid = nsGuid(subnqn, nsid);
  const uuid = new Uint8Array(createHash('sha256').update(`${subnqn}/ns${nsid}/uuid`).digest().subarray(0, 16));
  uuid[6] = (uuid[6]! & 0x0f) | 0x50; // RFC 4122 version 5-like, variant 1
  uuid[8] = (uuid[8]! & 0x3f) | 0x80;
  return new Writer()
    .u8(0, 2) // NIDT NGUID
    .u8(1, 16)
    .bytes(4, nguid)
    .u8(20, 3) // NIDT UUID
    .u8(21, 16)
    .bytes(24, uuid).buf;
}
