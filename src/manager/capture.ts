// Reading a capture while the switch writes it (`lab capture`): the switch appends whole pcap
// records (src/fabric/wire/pcap.ts) at least every 0.5 s, so the file read so far ends on a
// record boundary or inside the last record, which is read on the next turn.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { decodeFrame } from '../fabric/wire/frame.ts';
import { formatMac, readMac } from '../fabric/wire/mac.ts';
import { pcapGlobalHeader, readPcap, type PcapRecord } from '../fabric/wire/pcap.ts';

const GLOBAL_HEADER = pcapGlobalHeader().length;
const RECORD_HEADER = 16;

/** The records appended to a pcap file since the last call. */
export class PcapTail {
  private offset = GLOBAL_HEADER;
  private readonly fd: number;

  constructor(file: string) {
    this.fd = openSync(file, 'r');
  }

  next(): PcapRecord[] {
    const size = fstatSync(this.fd).size;
    if (size <= this.offset) return [];
    const bytes = Buffer.alloc(size - this.offset);
    readSync(this.fd, bytes, 0, bytes.length, this.offset);
    // Only whole records: the last one may still be on its way.
    let end = 0;
    while (end + RECORD_HEADER <= bytes.length && end + RECORD_HEADER + bytes.readUInt32LE(end + 8) <= bytes.length) end += RECORD_HEADER + bytes.readUInt32LE(end + 8);
    this.offset += end;
    return readPcap(Buffer.concat([pcapGlobalHeader(), bytes.subarray(0, end)]));
  }

  close(): void {
    closeSync(this.fd);
  }
}

const TYPE = ['TLP', 'ACK', 'NAK', 'heartbeat', 'discovery', 'management'];

/** One line per frame, tcpdump-like: time, MACs, and the PCIeOE header's fields. */
export function frameLine(r: PcapRecord): string {
  const t = new Date(r.time);
  const time = `${t.toISOString().slice(11, 19)}.${String(Math.round((r.time % 1000) * 1000)).padStart(6, '0')}`;
  const d = decodeFrame(r.data);
  if (!d.ok) {
    const macs = r.data.length >= 12 ? `${formatMac(readMac(r.data, 6))} > ${formatMac(readMac(r.data, 0))}` : '';
    return `${time} ${macs} ${d.error === 'bad-ethertype' ? d.detail : `bad PCIeOE frame (${d.detail})`}, ${r.origLength} bytes`;
  }
  const f = d.value;
  const vlan = f.vlan ? ` vlan ${f.vlan.vid}` : '';
  return `${time} ${formatMac(f.src)} > ${formatMac(f.dst)}${vlan} ${TYPE[f.type]} ch ${f.channel} seq ${f.seq} ack ${f.ack} payload ${f.payload.length}, ${r.origLength} bytes`;
}
