/**
 * Classic libpcap files (not pcapng): a 24-byte global header, then per
 * frame a 16-byte record header and the frame. Link type 1 (Ethernet, no
 * FCS); tshark and Wireshark read it as is. Little-endian, microseconds.
 */

import * as fs from 'node:fs';

const MAGIC_USEC = 0xa1b2c3d4;
const LINKTYPE_ETHERNET = 1;

export interface PcapRecord {
  /** Capture time, ms since the epoch (microsecond resolution). */
  time: number;
  /** Bytes on the wire; `data` may be shorter when the snap length cut it. */
  origLength: number;
  data: Buffer;
}

export function pcapGlobalHeader(snaplen = 65535): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(MAGIC_USEC, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeInt32LE(0, 8); // thiszone
  h.writeUInt32LE(0, 12); // sigfigs
  h.writeUInt32LE(snaplen, 16);
  h.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return h;
}

export function pcapRecord(frame: Uint8Array, timeMs: number, snaplen = 65535): Buffer {
  const incl = Math.min(frame.length, snaplen);
  const r = Buffer.allocUnsafe(16 + incl);
  writeRecordHeader(r, 0, incl, frame.length, timeMs);
  r.set(frame.subarray(0, incl), 16);
  return r;
}

function writeRecordHeader(buf: Buffer, at: number, incl: number, origLength: number, timeMs: number): void {
  const usec = Math.round(timeMs * 1000);
  buf.writeUInt32LE(Math.floor(usec / 1e6), at);
  buf.writeUInt32LE(usec % 1e6, at + 4);
  buf.writeUInt32LE(incl, at + 8);
  buf.writeUInt32LE(origLength, at + 12);
}

/**
 * Appends frames to a pcap file. Records collect in memory and reach the file
 * when `bufferBytes` fill up, on flush() and on close(), so capturing a busy
 * port costs a write per buffer rather than a syscall per frame.
 */
export class PcapWriter {
  private fd: number | null;
  private readonly buf: Buffer;
  private used = 0;

  constructor(path: string, private readonly snaplen = 65535, bufferBytes = 256 * 1024) {
    this.fd = fs.openSync(path, 'w');
    this.buf = Buffer.allocUnsafe(Math.max(bufferBytes, 16 + snaplen));
    fs.writeSync(this.fd, pcapGlobalHeader(snaplen));
  }

  write(frame: Uint8Array, timeMs = Date.now()): void {
    if (this.fd === null) return;
    const incl = Math.min(frame.length, this.snaplen);
    if (this.used + 16 + incl > this.buf.length) this.flush();
    writeRecordHeader(this.buf, this.used, incl, frame.length, timeMs);
    this.buf.set(frame.subarray(0, incl), this.used + 16);
    this.used += 16 + incl;
  }

  /** Write buffered records to the file. */
  flush(): void {
    if (this.fd === null || this.used === 0) return;
    fs.writeSync(this.fd, this.buf, 0, this.used);
    this.used = 0;
  }

  close(): void {
    this.flush();
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** Parse a classic pcap file written by PcapWriter (little-endian, microsecond magic). */
export function readPcap(buf: Buffer): PcapRecord[] {
  if (buf.length < 24 || buf.readUInt32LE(0) !== MAGIC_USEC) throw new Error('not a little-endian microsecond pcap file');
  const out: PcapRecord[] = [];
  let o = 24;
  while (o + 16 <= buf.length) {
    const incl = buf.readUInt32LE(o + 8);
    if (o + 16 + incl > buf.length) throw new Error('truncated pcap record');
    out.push({
      time: buf.readUInt32LE(o) * 1000 + buf.readUInt32LE(o + 4) / 1000,
      origLength: buf.readUInt32LE(o + 12),
      data: buf.subarray(o + 16, o + 16 + incl),
    });
    o += 16 + incl;
  }
  return out;
}
