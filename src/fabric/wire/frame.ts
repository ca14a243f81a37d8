/**
 * PCIeOE frame codec: one TLP (or a link-control message) per 802.1Q-tagged
 * Ethernet frame.
 *
 * Byte layout (big-endian; offsets for a tagged frame, an untagged one has
 * everything from the Ethertype on 4 bytes earlier):
 *
 *   off  size  field
 *    0    6    destination MAC
 *    6    6    source MAC
 *   12    2    TPID 0x8100 (802.1Q)
 *   14    2    TCI: PCP[15:13] | DEI[12] | VID[11:0]
 *   16    2    Ethertype 0x88B5 (IEEE 802 local experimental 1)
 *   -- PCIeOE header, 24 bytes --
 *   18    1    version[7:4] | FrameType[3:0]
 *   19    1    FrameFlags
 *   20    2    channel id: which HI↔DI association the frame belongs to
 *   22    2    sequence number of the carried TLP (other types: the next one the sender will use)
 *   24    2    cumulative ACK: the next sequence number the sender expects; all before it arrived
 *   26    2    credit limit: the receiver of this frame may send TLPs numbered before it
 *   28    2    payload length in bytes
 *   30    4    CRC-32 of bytes 18 to the payload's end, computed with this field zero
 *   34    4    sender's epoch: drawn at random (non-zero) when its channel end starts
 *   38    4    receiver's epoch as the sender last heard it; 0 before it heard any
 *   -- payload --
 *   42    n    one TLP (TLP frames) or the message body (discovery, management)
 *              zero padding up to 60 bytes, the Ethernet minimum without FCS
 *
 * The CRC plays PCIe's LCRC: datagrams carried over sockets have no FCS. It
 * leaves out the Ethernet header on purpose, since switches rewrite VLAN tags;
 * addresses and VLAN are checked against the channel's binding instead.
 * Sequence numbers, ACK and credit limit are 16-bit and wrap (see seq.ts).
 *
 * Epochs tell incarnations of a channel end apart: sequence numbers, ACKs and
 * credits mean something only between the two epochs a frame names, so a
 * restarted end (new epoch) makes its peer reset the channel, and frames
 * addressed to an end's earlier incarnation are dropped (see link/channel.ts).
 * Version 2 added them; version 1 frames are refused.
 */

import { copyCrc32, crc32Range, sealFrame } from './crc32.ts';
import { type Mac, readMac, writeMac } from './mac.ts';
import { type Decoded, failed } from '../result.ts';
import { encodeSlab } from '../slab.ts';

export const ETHERTYPE_PCIEOE = 0x88b5;
export const TPID_8021Q = 0x8100;
export const PCIEOE_VERSION = 2;
export const PCIEOE_HEADER_BYTES = 24;
export const MIN_FRAME_BYTES = 60;
/** Ethernet header with an 802.1Q tag. */
export const TAGGED_L2_BYTES = 18;
export const UNTAGGED_L2_BYTES = 14;

export const enum FrameType {
  Tlp = 0,
  /** Standalone ACK and credit update, sent only when nothing can carry them. */
  Ack = 1,
  /** A gap was seen: resend from the ACK field on. */
  Nak = 2,
  Heartbeat = 3,
  Discovery = 4,
  Management = 5,
}

export const enum FrameFlags {
  /** The sender's replay buffer or credit window is nearly used up: acknowledge at once. */
  AckNow = 0x01,
  /** This TLP frame is a retransmission. */
  Replay = 0x02,
  /**
   * This ACK answers a replayed AckNow frame, sent after that frame arrived
   * while nothing was held out of order, so it covers everything sent before
   * that frame that was not lost (a replay timeout's probe tells a late ACK
   * from loss with it).
   */
  ProbeAnswer = 0x04,
}

export interface VlanTag {
  /** Priority code point, 0-7. */
  pcp: number;
  /** Drop eligible indicator. */
  dei: boolean;
  /** VLAN id, 0-4095. */
  vid: number;
}

export interface FrameHeader {
  dst: Mac;
  src: Mac;
  vlan: VlanTag | null;
  type: FrameType;
  flags: number;
  channel: number;
  seq: number;
  ack: number;
  credits: number;
  /** The sender's epoch (32-bit). Default 0, for frames outside a channel. */
  epoch?: number;
  /** The receiver's epoch as the sender knows it; 0: not known. Default 0. */
  peerEpoch?: number;
}

export interface Frame extends FrameHeader {
  epoch: number;
  peerEpoch: number;
  /** A view into the decoded buffer, not a copy. */
  payload: Uint8Array;
}

export type FrameDecodeError = 'truncated' | 'bad-ethertype' | 'bad-version' | 'bad-crc' | 'unknown-type';

const NO_PAYLOAD = new Uint8Array(0);

/** The header from `hdr` and the payload up to `payloadEnd`, the CRC field counted as zero: one native call. */
function crcOf(buf: Uint8Array, hdr: number, payloadEnd: number): number {
  return crc32Range(buf, 0, hdr, payloadEnd, hdr + 12);
}

export function frameSize(vlan: VlanTag | null, payloadBytes: number): number {
  return Math.max(MIN_FRAME_BYTES, (vlan ? TAGGED_L2_BYTES : UNTAGGED_L2_BYTES) + PCIEOE_HEADER_BYTES + payloadBytes);
}

/**
 * A frame to be encoded where it leaves: its header and its payload, held by
 * reference (the payload must not change until the frame is sent). A
 * transport that has the room at hand writes it there (memif: straight into
 * the ring slot, see writeFrame) instead of copying an encoded frame.
 */
export interface OutgoingFrame extends FrameHeader {
  payload: Uint8Array;
}

/** Build a frame in fresh memory (not shared with any other frame); the payload is copied in. */
export function encodeFrame(h: FrameHeader, payload: Uint8Array = NO_PAYLOAD): Buffer {
  // From a slab (slab.ts): a 4 KiB frame would otherwise get an ArrayBuffer of its own.
  const buf = encodeSlab.alloc(frameSize(h.vlan, checkedLength(payload)));
  writeFrame(buf, 0, h, payload);
  return buf;
}

function checkedLength(payload: Uint8Array): number {
  if (payload.length > 0xffff) throw new RangeError(`payload of ${payload.length} bytes does not fit the length field`);
  return payload.length;
}

/**
 * Encode a frame into buf[at, at + frameSize(h.vlan, payload.length)): header, payload and CRC,
 * the payload copied and folded into the CRC in one pass.
 */
export function writeFrame(buf: Uint8Array, at: number, h: FrameHeader, payload: Uint8Array = NO_PAYLOAD): void {
  const length = checkedLength(payload);
  writeMac(buf, at, h.dst);
  writeMac(buf, at + 6, h.src);
  let o = at + 12;
  if (h.vlan) {
    writeU16(buf, o, TPID_8021Q);
    writeU16(buf, o + 2, ((h.vlan.pcp & 7) << 13) | (h.vlan.dei ? 0x1000 : 0) | (h.vlan.vid & 0xfff));
    o += 4;
  }
  writeU16(buf, o, ETHERTYPE_PCIEOE);
  const hdr = o + 2;
  buf[hdr] = (PCIEOE_VERSION << 4) | (h.type & 0xf);
  buf[hdr + 1] = h.flags & 0xff;
  writeU16(buf, hdr + 2, h.channel);
  writeU16(buf, hdr + 4, h.seq);
  writeU16(buf, hdr + 6, h.ack);
  writeU16(buf, hdr + 8, h.credits);
  writeU16(buf, hdr + 10, length);
  writeU32(buf, hdr + 16, h.epoch ?? 0);
  writeU32(buf, hdr + 20, h.peerEpoch ?? 0);
  // The header's CRC (its CRC field as zero), then the payload copied in and folded in the same pass.
  const end = hdr + PCIEOE_HEADER_BYTES + length;
  const frameEnd = at + Math.max(MIN_FRAME_BYTES, end - at);
  if (end < frameEnd) buf.fill(0, end, frameEnd);
  sealFrame(buf, hdr, payload);
}

/**
 * Copy the received frame src[start, end) to dst[0, end - start) and check its CRC in the same
 * pass. True: a PCIeOE frame whose CRC matches, so decodeFrame(dst, true) need not read it again.
 * False: anything else (not PCIeOE, too short, damaged), copied all the same, for decodeFrame to
 * tell what. The layout is taken from src, then confirmed on the copy: a peer writing into
 * shared memory meanwhile cannot make a check of other bytes vouch for the copy.
 */
export function copyCheckedFrame(dst: Uint8Array, src: Uint8Array, start: number, end: number): boolean {
  const hdr = pcieoeHeaderAt(src, start, end);
  const length = hdr < 0 ? -1 : frameLength(src, start + hdr);
  const payloadEnd = hdr + PCIEOE_HEADER_BYTES + length;
  if (hdr < 0 || payloadEnd > end - start) {
    dst.set(start === 0 && end === src.length ? src : src.subarray(start, end));
    return false;
  }
  const crc = copyCrc32(dst, 0, src, start, end, start + hdr, start + payloadEnd, start + hdr + 12);
  return crc === readU32(dst, hdr + 12) && pcieoeHeaderAt(dst, 0, end - start) === hdr && frameLength(dst, hdr) === length;
}

/** Where the PCIeOE header of the frame in buf[start, end) begins, relative to start; -1 if it is not a PCIeOE frame. */
function pcieoeHeaderAt(buf: Uint8Array, start: number, end: number): number {
  if (end - start < TAGGED_L2_BYTES + PCIEOE_HEADER_BYTES) return -1;
  const o = ethertypeAt(buf, start, end);
  return readU16BE(buf, start + o) === ETHERTYPE_PCIEOE ? o + 2 : -1;
}

/**
 * Where the Ethertype of the Ethernet frame in buf[start, end) lies, relative to start: 12, or
 * 16 behind an 802.1Q tag; -1 when the frame ends before that field.
 */
function ethertypeAt(buf: Uint8Array, start: number, end: number): number {
  if (end - start < UNTAGGED_L2_BYTES) return -1;
  if (readU16BE(buf, start + 12) !== TPID_8021Q) return 12;
  return end - start < TAGGED_L2_BYTES ? -1 : 16;
}

function readU16BE(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

const FRAME_ERRORS: readonly FrameDecodeError[] = ['truncated', 'bad-ethertype', 'bad-version', 'bad-crc', 'unknown-type'];
/** Why the last checkFrame that failed failed, in words (made only on failure). */
let lastFailure = '';

/**
 * Check an untrusted frame where it lies, without decoding it: the offset of its PCIeOE header
 * (14 untagged, 18 tagged) when it is a whole PCIeOE frame of a known type whose CRC matches,
 * else a negative code (frameError tells which). Never throws. `crcChecked`: the CRC was
 * already found good while the frame was copied into buf (copyCheckedFrame). The fields are
 * then read with the frame* functions below: a receiver on the hot path allocates nothing.
 */
export function checkFrame(buf: Uint8Array, crcChecked = false): number {
  const o = ethertypeAt(buf, 0, buf.length);
  if (o < 0) return fail(0, `${buf.length} bytes is shorter than ${buf.length < UNTAGGED_L2_BYTES ? 'an' : 'a tagged'} Ethernet header`);
  const ethertype = readU16BE(buf, o);
  if (ethertype !== ETHERTYPE_PCIEOE) return fail(1, `Ethertype 0x${ethertype.toString(16).padStart(4, '0')}`);
  const hdr = o + 2;
  if (buf.length < hdr + PCIEOE_HEADER_BYTES) return fail(0, `${buf.length} bytes leaves no room for the PCIeOE header`);
  const version = buf[hdr]! >>> 4;
  if (version !== PCIEOE_VERSION) return fail(2, `version ${version}`);
  const length = frameLength(buf, hdr);
  const end = hdr + PCIEOE_HEADER_BYTES + length;
  if (end > buf.length) return fail(0, `payload length ${length} runs past the frame's ${buf.length} bytes`);
  if (!crcChecked) {
    const crc = readU32(buf, hdr + 12);
    const actual = crcOf(buf, hdr, end);
    if (crc !== actual) return fail(3, `CRC 0x${crc.toString(16)} but contents give 0x${actual.toString(16)}`);
  }
  const type = buf[hdr]! & 0xf;
  if (type > FrameType.Management) return fail(4, `frame type ${type}`);
  return hdr;
}

function fail(error: number, why: string): number {
  lastFailure = why;
  return -1 - error;
}

/** What a negative checkFrame result means. */
export function frameError(code: number): FrameDecodeError {
  return FRAME_ERRORS[-1 - code]!;
}

// The fields of a frame checkFrame passed, `hdr` being its result.
export const frameDst = (buf: Uint8Array): Mac => readMac(buf, 0);
export const frameSrc = (buf: Uint8Array): Mac => readMac(buf, 6);
/** The VLAN id of a tagged frame; -1 for an untagged one. */
export const frameVid = (buf: Uint8Array, hdr: number): number => (hdr === TAGGED_L2_BYTES ? readU16BE(buf, 14) & 0xfff : -1);
export const frameType = (buf: Uint8Array, hdr: number): FrameType => buf[hdr]! & 0xf;
export const frameFlags = (buf: Uint8Array, hdr: number): number => buf[hdr + 1]!;
export const frameChannel = (buf: Uint8Array, hdr: number): number => readU16BE(buf, hdr + 2);
export const frameSeq = (buf: Uint8Array, hdr: number): number => readU16BE(buf, hdr + 4);
export const frameAck = (buf: Uint8Array, hdr: number): number => readU16BE(buf, hdr + 6);
export const frameCredits = (buf: Uint8Array, hdr: number): number => readU16BE(buf, hdr + 8);
/** The payload's length field (checkFrame has found it within the frame). */
export const frameLength = (buf: Uint8Array, hdr: number): number => readU16BE(buf, hdr + 10);
export const frameEpoch = (buf: Uint8Array, hdr: number): number => readU32(buf, hdr + 16);
export const framePeerEpoch = (buf: Uint8Array, hdr: number): number => readU32(buf, hdr + 20);
/** The payload: a view into buf, not a copy. */
export function framePayload(buf: Uint8Array, hdr: number): Uint8Array {
  const start = hdr + PCIEOE_HEADER_BYTES;
  return buf.subarray(start, start + frameLength(buf, hdr));
}

/**
 * Decode an untrusted frame. Never throws; the payload is a view into `buf`. `crcChecked`: the
 * CRC was already found good while the frame was copied into buf (copyCheckedFrame).
 */
export function decodeFrame(buf: Uint8Array, crcChecked = false): Decoded<Frame, FrameDecodeError> {
  const hdr = checkFrame(buf, crcChecked);
  if (hdr < 0) return failed(frameError(hdr), lastFailure);
  return {
    ok: true,
    value: {
      dst: frameDst(buf),
      src: frameSrc(buf),
      vlan: hdr === TAGGED_L2_BYTES ? vlanTagOf(readU16BE(buf, 14)) : null,
      type: frameType(buf, hdr),
      flags: frameFlags(buf, hdr),
      channel: frameChannel(buf, hdr),
      seq: frameSeq(buf, hdr),
      ack: frameAck(buf, hdr),
      credits: frameCredits(buf, hdr),
      epoch: frameEpoch(buf, hdr),
      peerEpoch: framePeerEpoch(buf, hdr),
      payload: framePayload(buf, hdr),
    },
  };
}

/** One frozen VlanTag per TCI seen: a link carries one or two, and each frame decoded would otherwise allocate its own. */
const vlanTags: (VlanTag | undefined)[] = [];

function vlanTagOf(tci: number): VlanTag {
  return (vlanTags[tci] ??= Object.freeze({ pcp: tci >>> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0xfff }));
}

function writeU16(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 8;
  buf[at + 1] = v;
}

function writeU32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = v >>> 16;
  buf[at + 2] = v >>> 8;
  buf[at + 3] = v;
}

function readU32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}
