// TCP segmentation offload (VIRTIO_NET_F_HOST_TSO4, virtio spec v1.2 §5.1.6.2): the driver
// hands the device one TCP/IPv4 packet of up to 64 KiB with gso_type TCPV4 and gso_size (the
// MSS); the device sends it as segments of at most gso_size payload bytes, each with the
// original headers (checksum.ts has the layout) adjusted as the sender's stack would have:
//   IPv4: total length, identification + k, header checksum;
//   TCP:  sequence number + the payload offset; FIN and PSH on the last segment only, CWR
//         on the first only; the checksum over the pseudo-header and the segment.
import { fold, ipv4At, onesSum } from './checksum.ts';

const TCP = 6;
const enum TcpFlag {
  Fin = 0x01,
  Psh = 0x08,
  Cwr = 0x80,
}

/** The segments of a TCP/IPv4 frame at `mss` payload bytes each; undefined if it is not one that can be cut. */
export function segmentTcpV4(frame: Uint8Array, mss: number): Uint8Array[] | undefined {
  const ip = ipv4At(frame);
  if (ip === undefined || mss < 1) return undefined;
  const ihl = (frame[ip]! & 0xf) * 4;
  const total = (frame[ip + 2]! << 8) | frame[ip + 3]!;
  const tcp = ip + ihl;
  if (ihl < 20 || frame[ip + 9] !== TCP || ip + total > frame.length || total < ihl + 20) return undefined;
  const doff = (frame[tcp + 12]! >> 4) * 4;
  const hdrEnd = tcp + doff;
  if (doff < 20 || hdrEnd > ip + total) return undefined;
  const payload = frame.subarray(hdrEnd, ip + total);
  if (payload.length === 0) return undefined;
  const src = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const id = src.getUint16(ip + 4);
  const seq = src.getUint32(tcp + 4);
  const flags = frame[tcp + 13]!;
  const out: Uint8Array[] = [];
  // Every segment in one allocation, back to back, written whole (headers, then the payload):
  // a batch of 45 segments cost 45 zeroed buffers and views, and their GC, before.
  const all = Buffer.allocUnsafe(Math.ceil(payload.length / mss) * hdrEnd + payload.length);
  const v = new DataView(all.buffer, all.byteOffset, all.byteLength);
  for (let off = 0, k = 0, at = 0; off < payload.length; off += mss, k++, at += hdrEnd + mss) {
    const chunk = payload.subarray(off, off + mss);
    const seg = all.subarray(at, at + hdrEnd + chunk.length);
    seg.set(frame.subarray(0, hdrEnd));
    seg.set(chunk, hdrEnd);
    v.setUint16(at + ip + 2, ihl + doff + chunk.length);
    v.setUint16(at + ip + 4, (id + k) & 0xffff);
    v.setUint16(at + ip + 10, 0);
    v.setUint16(at + ip + 10, ~fold(onesSum(seg.subarray(ip, tcp))) & 0xffff);
    v.setUint32(at + tcp + 4, (seq + off) >>> 0);
    let f = flags;
    if (off + mss < payload.length) f &= ~(TcpFlag.Fin | TcpFlag.Psh);
    if (k > 0) f &= ~TcpFlag.Cwr;
    seg[tcp + 13] = f;
    v.setUint16(at + tcp + 16, 0);
    const pseudo = onesSum(seg.subarray(ip + 12, ip + 20), TCP + doff + chunk.length);
    v.setUint16(at + tcp + 16, ~fold(onesSum(seg.subarray(tcp), pseudo)) & 0xffff);
    out.push(seg);
  }
  return out;
}
