// The entry point's command line: controllers, namespaces, serials.
import test from 'ava';
import { defaultSerial, parseArgs } from '../../src/direct-attach/nvme-main.ts';

test('--socket starts a controller; --ns after it are its namespaces; relative files go to the data dir', (t) => {
  const c = parseArgs(['--socket', 'a', '--ns', 'file=a.img,size=1G,lba=4096', '--ns', 'file=/abs/b.img', '--socket', 'b', '--serial', 'S1', '--ns', 'file=c.img,size=64M'], '/data/topo');
  t.deepEqual(c, [
    { socket: 'a', namespaces: [{ path: '/data/topo/a.img', size: 2 ** 30, lbaSize: 4096 }, { path: '/abs/b.img', size: 2 ** 30, lbaSize: 512 }] },
    { socket: 'b', serial: 'S1', namespaces: [{ path: '/data/topo/c.img', size: 64 * 2 ** 20, lbaSize: 512 }] },
  ]);
});

test('bad command lines are refused with the reason', (t) => {
  t.throws(() => parseArgs([], '/d'), { message: /no --socket/ });
  t.throws(() => parseArgs(['--ns', 'file=x'], '/d'), { message: /before the first --socket/ });
  t.throws(() => parseArgs(['--socket', 'a'], '/d'), { message: /no --ns/ });
  t.throws(() => parseArgs(['--socket', 'a', '--ns', 'size=1G'], '/d'), { message: /file= is required/ });
  t.throws(() => parseArgs(['--socket', 'a', '--ns', 'file=x,lba=1024'], '/d'), { message: /512 or 4096/ });
  t.throws(() => parseArgs(['--socket', 'a', '--ns', 'file=x,size=12'], '/d'), { message: /size like/ });
  t.throws(() => parseArgs(['--socket', 'a', '--bogus', '1'], '/d'), { message: /unknown option --bogus/ });
});

test('default serials: 20 characters, stable, different per controller', (t) => {
  const a = defaultSerial('topo', 'nvme0', ['/d/a.img']);
  t.regex(a, /^PCIEOE[0-9A-F]{14}$/);
  t.is(defaultSerial('topo', 'nvme0', ['/d/a.img']), a);
  t.not(defaultSerial('topo', 'nvme1', ['/d/a.img']), a);
  t.not(defaultSerial('other', 'nvme0', ['/d/a.img']), a);
});
