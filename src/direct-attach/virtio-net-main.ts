// Process entry: the virtio-net model served over vfio-user (direct attach),
// its wire a unix datagram port cabled to a port of the lab switch.
//
//   node --import tsx src/direct-attach/virtio-net-main.ts \
//     --socket net0 --mac 02:00:00:00:00:0a [--mtu 1500] --wire $LAB_STATE/sockets/sw/a.sock [--wire-local PATH]
//
// The vfio-user socket is $LAB_SOCKET_DIR/<socket>.sock. --wire is the switch
// port's socket; this end binds --wire-local (default
// $LAB_SOCKET_DIR/<socket>-wire.sock), which the switch should name as the
// port's --peer. A client that disconnects leaves the device waiting for the
// next one; SIGTERM/SIGINT close both sockets and exit 0. SIGUSR2 prints the
// device's and the port's counters to the log. RING_EVENT_IDX, the checksum offloads,
// HOST_TSO4 and packed rings are offered unless VIRTIO_NET_EVENT_IDX=0, VIRTIO_NET_CSUM=0,
// VIRTIO_NET_TSO=0 or VIRTIO_NET_PACKED=0 (to measure without them; a DI's NIC functions read
// the same variables).
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs as parseNodeArgs } from 'node:util';
import { servePciFunction } from './adapter.ts';
import { exitOnHelp } from '../common/command-line.ts';
import { processLogger } from '../common/logger.ts';
import { UnixDgramPort } from '../fabric/wire/unix-dgram-port.ts';
import { formatMac, netOptionsFromEnv, parseMac, VirtioNet } from '../devices/virtio-net/net-device.ts';

export interface NicArgs {
  socket: string;
  mac: Uint8Array;
  mtu: number;
  wire: string;
  wireLocal: string;
}

export function parseArgs(argv: string[], socketDir: string): NicArgs {
  const { values } = parseNodeArgs({
    args: argv,
    options: { socket: { type: 'string' }, mac: { type: 'string' }, mtu: { type: 'string' }, wire: { type: 'string' }, 'wire-local': { type: 'string' } },
    strict: true,
  });
  const socket = values.socket;
  if (!socket || !/^[a-z0-9-]+$/.test(socket)) throw new Error(`--socket ${socket ?? '(missing)'}: expected a name like "net0"`);
  if (!values.mac) throw new Error('--mac is required (a unicast address like 02:00:00:00:00:0a)');
  const mac = parseMac(values.mac);
  if (mac[0]! & 1) throw new Error(`--mac ${values.mac}: a multicast address`);
  const mtu = Number(values.mtu ?? 1500);
  if (!/^\d+$/.test(values.mtu ?? '1500') || mtu < 68 || mtu > 9000) throw new Error(`--mtu ${values.mtu}: expected 68-9000`);
  if (!values.wire) throw new Error('--wire is required: the switch port socket to cable to');
  return { socket, mac, mtu, wire: values.wire, wireLocal: values['wire-local'] ?? join(socketDir, `${socket}-wire.sock`) };
}

const COMMAND_LINE = {
  name: 'virtio-net',
  usage: 'usage: virtio-net-main.ts --socket NAME --mac MAC --wire SWITCH-PORT-SOCKET [--wire-local PATH] [--mtu 68-9000]   (sockets in $LAB_SOCKET_DIR)',
};

function main(): void {
  exitOnHelp(COMMAND_LINE);
  const socketDir = process.env.LAB_SOCKET_DIR;
  if (!socketDir) throw new Error('LAB_SOCKET_DIR is not set');
  const a = parseArgs(process.argv.slice(2), socketDir);
  const log = processLogger('virtio-net');
  const port = new UnixDgramPort({ path: a.wireLocal, peer: a.wire, maxFrame: a.mtu + 18 });
  const nic = new VirtioNet({ mac: a.mac, mtu: a.mtu, wire: port, log, ...netOptionsFromEnv(process.env) });
  const server = servePciFunction(nic, { path: join(socketDir, `${a.socket}.sock`), name: a.socket, log });
  log('info', `virtio-net ${a.socket}: MAC ${formatMac(a.mac)}, MTU ${a.mtu}, wire ${a.wireLocal} -> ${a.wire}`);
  const counters = () => log('info', `counters: device ${JSON.stringify(nic.counters)} port ${JSON.stringify(port.counters)}`);
  process.on('SIGUSR2', counters);
  const stop = (signal: string) => {
    log('info', `${signal}: closing`);
    counters();
    server.close();
    port.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

// Run only as the entry point (tests import parseArgs).
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  try {
    main();
  } catch (err) {
    console.error(`virtio-net: ${(err as Error).message}`);
    process.exit(1);
  }
}
