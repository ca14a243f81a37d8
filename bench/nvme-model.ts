// The NVMe model's own cost per command, without QEMU or vfio-user: the
// controller in this process, guest memory a byte array, namespaces on a
// sparse file in the page cache. Batches of 64 commands are submitted with
// one doorbell and reaped by phase tag, as a QD-64 host would; the QD 1 cases
// submit one command at a time (every command then pays its own wake-ups).
//
//   npm run bench -- nvme-model      (NVME_BENCH_SECONDS=3 per case)
import { PAGE, TestHost } from '../src/devices/nvme/soft-host.ts';
import { record, recordSettings } from './lib/results.ts';

const seconds = Number(process.env.NVME_BENCH_SECONDS ?? 3);
const teardowns: (() => unknown)[] = [];
const h = new TestHost({ teardown: (fn) => teardowns.push(fn) }, { namespaces: [{ path: 'bench.img', size: 256 << 20, lbaSize: 512 }] }, 64 << 20);
await h.ctrl.open();
await h.enable();
await h.createIoQueue(1, 256, 1);
const QD = 64;
const bufs = Array.from({ length: QD }, () => h.alloc(16 * PAGE));
const blocks = (256 << 20) / 512;

async function run(name: string, opcode: number, bytes: number, qd = QD): Promise<void> {
  const nlb = bytes / 512;
  const pages = Math.ceil(bytes / PAGE);
  // PRP lists for transfers over two pages: one list page per buffer, after its data pages.
  const lists = bufs.map((b) => {
    const list = h.alloc(PAGE);
    for (let i = 1; i < pages; i++) h.mem.u64(list + 8 * (i - 1), b + i * PAGE);
    return list;
  });
  const cmd = (i: number) => ({
    opcode,
    nsid: 1,
    prp1: bufs[i]!,
    prp2: pages === 2 ? bufs[i]! + PAGE : pages > 2 ? lists[i]! : 0,
    cdw10: Math.floor(Math.random() * (blocks / nlb)) * nlb,
    cdw12: nlb - 1,
  });
  const cqe0 = { ...h.ctrl.cqes.stats };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < seconds * 1000) {
    const done = await h.submitMany(1, Array.from({ length: qd }, (_, i) => cmd(i)));
    if (done.some((e) => e.status !== 0)) throw new Error(`${name}: a command failed`);
    n += qd;
  }
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  record({ kind: 'value', bench: 'nvme-model', name: `${name} IOPS`, value: n / s, unit: 'IOPS' });
  record({ kind: 'value', bench: 'nvme-model', name: `${name} CPU per command`, value: (cpu.user + cpu.system) / n, unit: 'µs' });
  const perWrite = (h.ctrl.cqes.stats.entries - cqe0.entries) / (h.ctrl.cqes.stats.writes - cqe0.writes);
  record({ kind: 'value', bench: 'nvme-model', name: `${name} completions per CQ write`, value: perWrite, unit: '' });
  console.log(`${name.padEnd(16)} ${Math.round(n / s).toString().padStart(8)} IOPS   ${(((cpu.user + cpu.system) / n)).toFixed(1).padStart(6)} µs CPU per command (driver included), ${perWrite.toFixed(2)} completions per CQ write`);
}

recordSettings('nvme-model', { secondsPerCase: seconds, queueDepth: QD });
console.log(`NVMe model in-process, QD ${QD} (unless named QD 1) on one queue, ${seconds} s per case, Node ${process.version}`);
await run('write 4 KiB', 0x01, 4096);
await run('read 4 KiB', 0x02, 4096);
await run('read 512 B', 0x02, 512);
await run('read 64 KiB', 0x02, 65536);
await run('write 64 KiB', 0x01, 65536);
await run('QD 1 read 4 KiB', 0x02, 4096, 1);
await run('QD 1 write 4 KiB', 0x01, 4096, 1);
for (const fn of teardowns) await fn();
