// Lab process: serves test devices over vfio-user, one socket each.
//
//   tsx src/direct-attach/testdev-main.ts [--socket-dir DIR] [--shared-page] [NAME ...]
//
// Each NAME gets its own TestDevice (with MSI: attached directly, QEMU can
// enable it) on DIR/NAME.sock. --shared-page gives each a memfd page in
// BAR2 offered for mmap; QEMU then stops posting MMIO writes to the device. DIR defaults to
// $LAB_SOCKET_DIR; with no NAME the one device is named after that directory,
// which the lab names after the process, so `server: <process>` in a
// topology just works. Logs go to stdout (the lab redirects it to
// $LAB_STATE/<process>.log). A client that disconnects leaves the server
// listening (QEMU's client never reconnects, but the next QEMU or a hot-plug
// does); SIGTERM/SIGINT close every socket and exit 0.
import { basename, join } from 'node:path';
import { parseCommandLine, usageError } from '../common/command-line.ts';
import { servePciFunction } from './adapter.ts';
import type { VfioUserServer } from '../vfio-user/server.ts';
import { processLogger } from '../common/logger.ts';
import { TestDevice } from '../devices/testdev/testdev.ts';

const USAGE = 'usage: main.ts [--socket-dir DIR] [--shared-page] [NAME ...]  (DIR defaults to $LAB_SOCKET_DIR)';
const NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;

const log = processLogger('testdev');

const COMMAND_LINE = { name: 'testdev', usage: USAGE };

function fail(message: string): never {
  return usageError(COMMAND_LINE, message);
}

const parsed = parseCommandLine(COMMAND_LINE, { 'socket-dir': { type: 'string' }, 'shared-page': { type: 'boolean' } }, { allowPositionals: true });
const dir = parsed.values['socket-dir'] ?? process.env.LAB_SOCKET_DIR;
if (!dir) fail('no socket directory: pass --socket-dir or set LAB_SOCKET_DIR');
const names = parsed.positionals.length > 0 ? parsed.positionals : [basename(dir)];
for (const n of names) if (!NAME.test(n)) fail(`bad device name "${n}" (lowercase letters, digits, "-")`);
if (new Set(names).size !== names.length) fail('device names must be unique');

const servers: VfioUserServer[] = [];
for (const name of names) {
  const dev = new TestDevice({ msi: true, sharedPage: parsed.values['shared-page'] ?? false });
  try {
    servers.push(servePciFunction(dev, { path: join(dir, `${name}.sock`), name, log }));
  } catch (err) {
    servers.forEach((s) => s.close());
    fail(`cannot listen on ${join(dir, `${name}.sock`)}: ${(err as Error).message}`);
  }
}
log('info', `testdev pid ${process.pid}: ${names.length} device(s) ready`);

function shutdown(signal: string): void {
  log('info', `${signal}: closing ${servers.length} server(s)`);
  for (const s of servers) s.close();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
