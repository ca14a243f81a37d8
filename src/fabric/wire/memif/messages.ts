/**
 * memif control messages: the handshake on the unix SOCK_SEQPACKET control
 * socket, as FD.io VPP's memif plugin, libmemif and DPDK's net_memif speak it
 * (protocol version 2.0). Every message is one 128-byte packet, little-endian,
 * packed: a 16-bit type, then that type's body, zero-filled to 128 bytes. A
 * region's memfd and a ring's interrupt eventfd travel beside their message as
 * SCM_RIGHTS.
 *
 * Roles: the server (VPP's "master") listens and speaks first; the client
 * ("slave") owns the shared memory. The exchange:
 *
 *   server                         client
 *   HELLO        ------------->
 *                <-------------    INIT
 *   ACK          ------------->
 *                <-------------    ADD_REGION (fd: memfd)   one per region
 *   ACK          ------------->
 *                <-------------    ADD_RING (fd: eventfd)   one per ring
 *   ACK          ------------->
 *                <-------------    CONNECT
 *   CONNECTED    ------------->
 *
 * and either side may send DISCONNECT (a code and a reason) before closing.
 * Names and strings are NUL-padded bytes (C strings; read and written here as
 * latin1, one byte a character, so any bytes survive a round trip); a decoder
 * reads them up to the first NUL or the field's end.
 */

export const MEMIF_MESSAGE_BYTES = 128;
/** Version 2.0: major << 8 | minor. */
export const MEMIF_VERSION = 0x0200;
export const MEMIF_NAME_BYTES = 32;
export const MEMIF_SECRET_BYTES = 24;
export const MEMIF_REASON_BYTES = 96;

export const enum MemifMessageType {
  None = 0,
  Ack = 1,
  Hello = 2,
  Init = 3,
  AddRegion = 4,
  AddRing = 5,
  Connect = 6,
  Connected = 7,
  Disconnect = 8,
}

/** INIT mode: only Ethernet frames are carried here. */
export const MEMIF_MODE_ETHERNET = 0;
/** ADD_RING flags bit 0: the ring carries client-to-server frames (VPP: S2M). */
export const MEMIF_ADD_RING_C2S = 1;

export type MemifMessage =
  | { type: 'ack' }
  | { type: 'hello'; name: string; minVersion: number; maxVersion: number; maxRegion: number; maxS2cRing: number; maxC2sRing: number; maxLog2RingSize: number }
  | { type: 'init'; version: number; id: number; mode: number; secret: string; name: string }
  | { type: 'add-region'; index: number; size: bigint }
  | { type: 'add-ring'; c2s: boolean; index: number; region: number; offset: number; log2RingSize: number; privateHeaderSize: number }
  | { type: 'connect'; interfaceName: string }
  | { type: 'connected'; interfaceName: string }
  | { type: 'disconnect'; code: number; reason: string };

/** A control packet that is not a memif message: the peer is dropped with this reason. */
export class MemifProtocolError extends Error {}

function putString(buf: Buffer, at: number, size: number, text: string): void {
  Buffer.from(text, 'latin1').copy(buf, at, 0, Math.min(text.length, size));
}

function getString(buf: Buffer, at: number, size: number): string {
  const field = buf.subarray(at, at + size);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? size : nul).toString('latin1');
}

// ---- one codec per message kind; offsets are from the start of the 128-byte packet ----

/**
 * HELLO (server → client), what the server accepts:
 *   0 u16 type = 2
 *   2 u8[32] name           the server's program name
 *  34 u16 min_version, 36 u16 max_version
 *  38 u16 max_region       highest region index accepted
 *  40 u16 max_m2s_ring     highest server-to-client ring index
 *  42 u16 max_s2m_ring     highest client-to-server ring index
 *  44 u8  max_log2_ring_size
 */
const hello = {
  encode(b: Buffer, m: Extract<MemifMessage, { type: 'hello' }>): void {
    putString(b, 2, MEMIF_NAME_BYTES, m.name);
    b.writeUInt16LE(m.minVersion, 34);
    b.writeUInt16LE(m.maxVersion, 36);
    b.writeUInt16LE(m.maxRegion, 38);
    b.writeUInt16LE(m.maxS2cRing, 40);
    b.writeUInt16LE(m.maxC2sRing, 42);
    b.writeUInt8(m.maxLog2RingSize, 44);
  },
  decode(b: Buffer): MemifMessage {
    return {
      type: 'hello', name: getString(b, 2, MEMIF_NAME_BYTES), minVersion: b.readUInt16LE(34), maxVersion: b.readUInt16LE(36),
      maxRegion: b.readUInt16LE(38), maxS2cRing: b.readUInt16LE(40), maxC2sRing: b.readUInt16LE(42), maxLog2RingSize: b.readUInt8(44),
    };
  },
};

/**
 * INIT (client → server), which interface the client wants:
 *   0 u16 type = 3
 *   2 u16 version
 *   4 u32 id               interface id (several interfaces may share one socket)
 *   8 u8  mode             0 Ethernet, 1 IP, 2 punt/inject
 *   9 u8[24] secret
 *  33 u8[32] name          the client's program name
 */
const init = {
  encode(b: Buffer, m: Extract<MemifMessage, { type: 'init' }>): void {
    b.writeUInt16LE(m.version, 2);
    b.writeUInt32LE(m.id, 4);
    b.writeUInt8(m.mode, 8);
    putString(b, 9, MEMIF_SECRET_BYTES, m.secret);
    putString(b, 33, MEMIF_NAME_BYTES, m.name);
  },
  decode(b: Buffer): MemifMessage {
    return { type: 'init', version: b.readUInt16LE(2), id: b.readUInt32LE(4), mode: b.readUInt8(8), secret: getString(b, 9, MEMIF_SECRET_BYTES), name: getString(b, 33, MEMIF_NAME_BYTES) };
  },
};

/**
 * ADD_REGION (client → server, fd: the region's memfd):
 *   0 u16 type = 4
 *   2 u16 index            regions are added in order 0, 1, ...
 *   4 u64 size             bytes of the region (mapped from offset 0)
 */
const addRegion = {
  encode(b: Buffer, m: Extract<MemifMessage, { type: 'add-region' }>): void {
    b.writeUInt16LE(m.index, 2);
    b.writeBigUInt64LE(m.size, 4);
  },
  decode(b: Buffer): MemifMessage {
    return { type: 'add-region', index: b.readUInt16LE(2), size: b.readBigUInt64LE(4) };
  },
};

/**
 * ADD_RING (client → server, fd: the ring's interrupt eventfd):
 *   0 u16 type = 5
 *   2 u16 flags            bit 0: client-to-server ring (else server-to-client)
 *   4 u16 index            ring index within its direction
 *   6 u16 region           region holding the ring
 *   8 u32 offset           where the ring header starts in that region
 *  12 u8  log2_ring_size   descriptors in the ring, as a power of two
 *  13 u16 private_hdr_size bytes of private metadata per buffer (0 here)
 */
const addRing = {
  encode(b: Buffer, m: Extract<MemifMessage, { type: 'add-ring' }>): void {
    b.writeUInt16LE(m.c2s ? MEMIF_ADD_RING_C2S : 0, 2);
    b.writeUInt16LE(m.index, 4);
    b.writeUInt16LE(m.region, 6);
    b.writeUInt32LE(m.offset, 8);
    b.writeUInt8(m.log2RingSize, 12);
    b.writeUInt16LE(m.privateHeaderSize, 13);
  },
  decode(b: Buffer): MemifMessage {
    return {
      type: 'add-ring', c2s: (b.readUInt16LE(2) & MEMIF_ADD_RING_C2S) !== 0, index: b.readUInt16LE(4), region: b.readUInt16LE(6),
      offset: b.readUInt32LE(8), log2RingSize: b.readUInt8(12), privateHeaderSize: b.readUInt16LE(13),
    };
  },
};

/**
 * CONNECT (client → server) and CONNECTED (server → client), the sender's interface name:
 *   0 u16 type = 6 / 7
 *   2 u8[32] if_name
 */
const named = {
  encode(b: Buffer, m: Extract<MemifMessage, { type: 'connect' | 'connected' }>): void {
    putString(b, 2, MEMIF_NAME_BYTES, m.interfaceName);
  },
  decode(b: Buffer, type: 'connect' | 'connected'): MemifMessage {
    return { type, interfaceName: getString(b, 2, MEMIF_NAME_BYTES) };
  },
};

/**
 * DISCONNECT (either way), then the sender closes the socket:
 *   0 u16 type = 8
 *   2 u32 code
 *   6 u8[96] reason
 */
const disconnect = {
  encode(b: Buffer, m: Extract<MemifMessage, { type: 'disconnect' }>): void {
    b.writeUInt32LE(m.code, 2);
    putString(b, 6, MEMIF_REASON_BYTES, m.reason);
  },
  decode(b: Buffer): MemifMessage {
    return { type: 'disconnect', code: b.readUInt32LE(2), reason: getString(b, 6, MEMIF_REASON_BYTES) };
  },
};

const TYPE_OF: Record<MemifMessage['type'], MemifMessageType> = {
  ack: MemifMessageType.Ack, hello: MemifMessageType.Hello, init: MemifMessageType.Init, 'add-region': MemifMessageType.AddRegion,
  'add-ring': MemifMessageType.AddRing, connect: MemifMessageType.Connect, connected: MemifMessageType.Connected, disconnect: MemifMessageType.Disconnect,
};

/** The 128-byte packet for `m`. */
export function encodeMemifMessage(m: MemifMessage): Buffer {
  const b = Buffer.alloc(MEMIF_MESSAGE_BYTES);
  b.writeUInt16LE(TYPE_OF[m.type], 0);
  switch (m.type) {
    case 'ack': break;
    case 'hello': hello.encode(b, m); break;
    case 'init': init.encode(b, m); break;
    case 'add-region': addRegion.encode(b, m); break;
    case 'add-ring': addRing.encode(b, m); break;
    case 'connect': case 'connected': named.encode(b, m); break;
    case 'disconnect': disconnect.encode(b, m); break;
  }
  return b;
}

/** Decode one control packet; throws MemifProtocolError naming what is wrong. */
export function decodeMemifMessage(packet: Buffer): MemifMessage {
  if (packet.length !== MEMIF_MESSAGE_BYTES) throw new MemifProtocolError(`control message of ${packet.length} bytes, expected ${MEMIF_MESSAGE_BYTES}`);
  const type = packet.readUInt16LE(0);
  switch (type) {
    case MemifMessageType.Ack: return { type: 'ack' };
    case MemifMessageType.Hello: return hello.decode(packet);
    case MemifMessageType.Init: return init.decode(packet);
    case MemifMessageType.AddRegion: return addRegion.decode(packet);
    case MemifMessageType.AddRing: return addRing.decode(packet);
    case MemifMessageType.Connect: return named.decode(packet, 'connect');
    case MemifMessageType.Connected: return named.decode(packet, 'connected');
    case MemifMessageType.Disconnect: return disconnect.decode(packet);
    default: throw new MemifProtocolError(`unknown control message type ${type}`);
  }
}
