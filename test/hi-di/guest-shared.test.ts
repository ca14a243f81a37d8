// The paper's 2:1 case against real QEMU and Linux: `lab up
// two-hosts-shared-card` — two guests, each with its own HI (two links), one DI
// hosting a two-function NVMe card, function 0 for host A, function 1 for
// host B. Each unmodified guest driver binds its own function; fio verify runs
// in both at once, first on a clean fabric, then with loss, corruption and
// reordering on every switch port and one DI link cut in the middle of the run.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SwitchControl } from '../../src/fabric/switch/control.ts';
import { TestLab } from '../support/lab-harness.ts';
import { until } from '../support/until.ts';
import { logLines } from '../support/log-lines.ts';

const lab = new TestLab('hidish');
const HOSTS = ['host-a', 'host-b'] as const;
const PORTS = ['hia0', 'hia1', 'hib0', 'hib1', 'di0', 'di1'];

test.before(async () => {
  const up = await lab.run(['up', 'two-hosts-shared-card']);
  if (up.code !== 0) throw new Error(`lab up two-hosts-shared-card failed:\n${up.stdout}\n${up.stderr}`);
});
test.after.always(() => lab.dispose());

async function guest(vm: string, command: string, timeoutS = 300): Promise<string> {
  const r = await lab.exec(vm, command, timeoutS);
  if (r.code !== 0) throw new Error(`${vm}: ${command.split('\n')[0]}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

// 4 KiB random read/write, two jobs of QD 32 each (QD 64 on the device, both
// I/O queues and their vectors busy), each job on its own 8 MiB; then 64 KiB
// sequential writes read back. Every block verified (crc32c, fatal).
const FIO_RAND = '--rw=randrw --bs=4k --iodepth=32 --numjobs=2 --size=8M --offset_increment=8M --group_reporting';
const FIO_SEQ = '--rw=write --bs=64k --iodepth=8 --size=16M --offset=64M';
const fio = (vm: string, args: string) =>
  guest(vm, `fio --name=t --filename=/dev/nvme0n1 --direct=1 --ioengine=libaio --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 ${args} 2>&1`, 500);

function checkFio(t: import('ava').ExecutionContext, vm: string, out: string) {
  t.regex(out, /err= 0/, `${vm}: ${out}`);
  t.notRegex(out, /verify: bad|verify failed|io_u error/, vm);
}

const logOf = (name: string) => readFileSync(join(lab.stateDir, `${name}.log`), 'utf8');

test.serial('[qemu] each guest binds its own function of the shared card under its switch slot', async (t) => {
  const serials: string[] = [];
  for (const vm of HOSTS) {
    t.regex(await guest(vm, 'lspci -tv -nn'), /-\[[0-9a-f]{2}-[0-9a-f]{2}\]----00\.0-\[[0-9a-f]{2}-[0-9a-f]{2}\]--\+-00\.0-\[[0-9a-f]{2}\]----00\.0 +.*\[1234:4e56\]/, vm);
    const dmesg = await guest(vm, 'dmesg | grep -i nvme');
    t.regex(dmesg, /nvme nvme0: 2\/0\/0 default\/read\/poll queues/, vm);
    t.notRegex(dmesg, /timeout|failed|error|reset/i, vm);
    const list = await guest(vm, 'nvme list');
    t.regex(list, /\/dev\/nvme0n1 .* PCIEOE-CARD-FN[01] +PCIeOE NVMe model/, vm);
    serials.push(/PCIEOE-CARD-FN[01]/.exec(list)![0]);
  }
  t.deepEqual(serials, ['PCIEOE-CARD-FN0', 'PCIEOE-CARD-FN1'], 'host A has function 0, host B function 1');
});

test.serial('[qemu] fio verify in both guests at once on a clean fabric', async (t) => {
  for (const out of await Promise.all(HOSTS.map((vm) => fio(vm, FIO_RAND)))) checkFio(t, 'rand', out);
  for (const out of await Promise.all(HOSTS.map((vm) => fio(vm, FIO_SEQ)))) checkFio(t, 'seq', out);
});

test.serial('[qemu] fio verify in both guests with 1 % loss, 0.1 % corruption, reordering, and a DI link cut mid-run', async (t) => {
  const ctl = await SwitchControl.connect(join(lab.stateDir, 'sockets', 'sw', 'control.sock'));
  t.teardown(() => ctl.close());
  const before = await ctl.must({ counters: true });
  for (const port of PORTS) await ctl.must({ port, set: { loss: 0.01, corrupt: 0.001, reorder: 0.01, reorderDelay: 1 } });
  // fio in the background (the guest agent runs one command at a time), four times the clean run's
  // data, so that the cut lands well inside the run however fast or loaded the machine is.
  const args = FIO_RAND.replace('--size=8M --offset_increment=8M', '--size=32M --offset_increment=32M');
  await Promise.all(HOSTS.map((vm) => guest(vm, `rm -f /tmp/fio.rc; (fio --name=t --filename=/dev/nvme0n1 --direct=1 --ioengine=libaio --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 ${args} >/tmp/fio.out 2>&1; echo $? >/tmp/fio.rc) >/dev/null 2>&1 &`)));
  // Mid-run: cut one DI link once the I/O is under way, judged by the DI's frames through the
  // switch rather than by time, since how long the run takes depends on the machine's load.
  const diFrames = async () => {
    const c = (await ctl.must({ counters: true })).ports as Record<string, { switch: { rxFrames: number } }>;
    return c.di0!.switch.rxFrames + c.di1!.switch.rxFrames;
  };
  const started = await diFrames();
  await until(async () => (await diFrames()) - started >= 1500, '1 500 DI frames of the background fio through the switch', { timeoutMs: 60_000, everyMs: 50 });
  await ctl.must({ port: 'di0', set: { down: true } });
  for (const vm of HOSTS) await guest(vm, 'test ! -f /tmp/fio.rc || { echo "fio finished before the cut: make the run longer" >&2; exit 1; }');
  const runs = await Promise.all(HOSTS.map((vm) => guest(vm, 'while [ ! -f /tmp/fio.rc ]; do sleep 0.5; done; cat /tmp/fio.out; exit $(cat /tmp/fio.rc)', 500)));
  for (const out of runs) checkFio(t, 'rand', out);
  const seq = await Promise.all(HOSTS.map((vm) => fio(vm, FIO_SEQ)));
  for (const out of seq) checkFio(t, 'seq', out);
  const after = await ctl.must({ counters: true });
  for (const port of PORTS) await ctl.must({ port, set: { loss: 0, corrupt: 0, reorder: 0, down: false } });

  // The faults really happened (else this test proves nothing).
  type Faults = Record<'tx' | 'rx', Record<string, number>>;
  const faults = (c: Record<string, unknown>, port: string) => (c.ports as Record<string, { faults: Faults }>)[port]!.faults;
  const sum = (key: string) =>
    PORTS.reduce((n, p) => n + (['tx', 'rx'] as const).reduce((m, d) => m + faults(after, p)[d][key]! - faults(before, p)[d][key]!, 0), 0);
  for (const key of ['lost', 'corrupted', 'reordered', 'downDropped']) t.true(sum(key) > 0, `${key}: ${sum(key)}`);
  t.log(`lost ${sum('lost')}, corrupted ${sum('corrupted')}, reordered ${sum('reordered')}, dropped on the cut link ${sum('downDropped')}`);

  // Zero I/O errors, no driver timeout or reset in either guest; no completion timed out in the HIs or the DI.
  for (const vm of HOSTS) t.notRegex(await guest(vm, 'dmesg'), /I\/O error|nvme.*(timeout|reset|error|abort)/i, vm);
  for (const p of ['hia', 'hib']) t.deepEqual(logLines(logOf(p), /all-ones|failed|uncaught|unhandled/), [], p);
  t.deepEqual(logLines(logOf('di'), /DMA .*timeout|function error|uncaught|unhandled/), []);
});

// Host A's HI turned hostile: it forges TLPs on its own channel (the only one
// it has) at host B's function — config requests to 01:00.1, memory requests
// outside A's own BARs — through the HI's control socket (a lab instrument,
// see src/hi/control.ts). The DI must answer UR, count each, and leave
// B's function and data as they were.
test.serial('[qemu] isolation: forged TLPs from host A\'s HI to host B\'s function are rejected (UR) and counted; B\'s data untouched', async (t) => {
  const pattern = 'yes host-b-data | head -c 1048576';
  await guest('host-b', `${pattern} | dd of=/dev/nvme0n1 bs=64k seek=2048 oflag=direct 2>/dev/null`);
  const readBack = 'dd if=/dev/nvme0n1 bs=64k count=16 skip=2048 iflag=direct 2>/dev/null | md5sum';
  const expected = (await guest('host-b', `${pattern} | md5sum`)).split(' ')[0];
  t.is((await guest('host-b', readBack)).split(' ')[0], expected);

  const hiA = await SwitchControl.connect(join(lab.stateDir, 'sockets', 'hia', 'control.sock'));
  const di = await SwitchControl.connect(join(lab.stateDir, 'sockets', 'di', 'control.sock'));
  t.teardown(() => {
    hiA.close();
    di.close();
  });
  type DiStats = { di: Record<string, number> };
  const forge = (f: Record<string, unknown>) => hiA.request({ forge: f } as never);
  const before = (await di.must({ stats: true } as never)) as unknown as DiStats;

  t.like(await forge({ channel: 1, type: 'CfgRd0', bdf: '01:00.1', register: 0 }), { ok: true, outcome: 'ur' }, 'B\'s IDs');
  // Command = 0 would turn off B's memory decode and bus mastering.
  t.like(await forge({ channel: 1, type: 'CfgWr0', bdf: '01:00.1', register: 1, firstBe: 3, data: '00000000' }), { ok: true, outcome: 'ur' });
  t.like(await forge({ channel: 1, type: 'MRd64', address: '0x8000100000', length: 1 }), { ok: true, outcome: 'ur' }, 'no BAR of A\'s there');
  t.like(await forge({ channel: 1, type: 'MWr64', address: '0x8000100000', data: 'efbeadde' }), { ok: true, posted: true });
  t.like(await forge({ channel: 2, type: 'CfgRd0', bdf: '01:00.1', register: 0 }), { ok: false }, 'A has no channel to B\'s side at all');
  // A's own function still answers on the same channel: the forged requests went where they were sent.
  t.like(await forge({ channel: 1, type: 'CfgRd0', bdf: '01:00.0', register: 0 }), { ok: true, outcome: 'ok', data: '3412564e' });

  let after = before;
  await until(async () => {
    after = (await di.must({ stats: true } as never)) as unknown as DiStats;
    return after.di.unclaimedWrites !== before.di.unclaimedWrites;
  }, 'the DI to count the forged posted write', { timeoutMs: 5000, everyMs: 100 });
  const delta = (k: string) => after.di[k]! - before.di[k]!;
  t.is(delta('rejectedConfig'), 2, 'the two config requests for B\'s function');
  t.is(delta('unclaimedReads'), 1);
  t.is(delta('unclaimedWrites'), 1);

  // B's function, data and driver are untouched.
  t.is((await guest('host-b', readBack)).split(' ')[0], expected);
  t.regex(await guest('host-b', 'lspci -vv -d 1234:4e56 | grep Control:'), /Mem\+ BusMaster\+/);
  checkFio(t, 'host-b', await fio('host-b', '--rw=randwrite --bs=4k --iodepth=8 --size=4M --offset=160M'));
  t.notRegex(await guest('host-b', 'dmesg'), /I\/O error|nvme.*(timeout|reset|error|abort)/i);
});
