// What the guest-level restart tests share: a lab process killed with SIGKILL and started again
// with the same command line and environment (lab.json follows, so `lab down` stops the new one),
// and the fio run it is killed under.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDetached, startTimeOf } from '../../src/lab/procs.ts';
import { shIoUnderway } from '../support/guest-wait.ts';
import type { TestLab } from '../support/lab-harness.ts';
import { until } from '../support/until.ts';

/** fio with crc32c verify on the remote namespace; add --rw, --bs, --size and the rest. */
export const FIO = 'fio --name=t --filename=/dev/nvme0n1 --direct=1 --ioengine=libaio --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0';

interface LabJson {
  processes: { name: string; pid: number; startTime: string; log: string }[];
}

/**
 * What both restart tests do before the kill, in guest `vm`: a 15 s I/O timeout (shorter than the driver's 30 s,
 * so its timeout path runs sooner; still long enough for the restarted process to be back when it reads CSTS,
 * all-ones then would make it give the device up), 4 MiB of random data written and flushed at 160 MiB, and a
 * fio verify of `runtimeS` seconds in the background, seen doing I/O, that writes "FIO-EXIT <status>" to the
 * kernel log when it ends. Returns the data's md5sum, to read back after.
 */
export async function flushedDataAndBackgroundFio(lab: TestLab, vm: string, runtimeS: number): Promise<string> {
  await lab.sh(vm, 'echo 15000 > /sys/block/nvme0n1/queue/io_timeout');
  const sum = await lab.sh(vm, 'head -c 4M /dev/urandom >/tmp/ref && dd if=/tmp/ref of=/dev/nvme0n1 bs=1M seek=160 oflag=direct status=none && blockdev --flushbufs /dev/nvme0n1 && md5sum </tmp/ref');
  await lab.sh(
    vm,
    `(${FIO} --rw=randrw --bs=4k --iodepth=16 --size=32M --time_based --runtime=${runtimeS} >/tmp/bg.out 2>&1; echo "FIO-EXIT $?" >/dev/kmsg) >/dev/null 2>&1 &\n` +
      `${shIoUnderway('nvme0n1', 2000)}; pgrep -x fio >/dev/null`,
  );
  return sum;
}

/** The pid of lab process `name` (lab.json). */
export function pidOf(lab: TestLab, name: string): number {
  const file = join(lab.stateDir, 'lab.json');
  const p = (JSON.parse(readFileSync(file, 'utf8')) as LabJson).processes.find((x) => x.name === name);
  if (!p) throw new Error(`no lab process ${name} in ${file}`);
  return p.pid;
}

/**
 * SIGKILL lab process `name` now; returns how to start it again with the same argv and environment
 * (read from /proc before the kill), which updates lab.json and returns the new pid.
 */
export function kill(lab: TestLab, name: string): () => number {
  const file = join(lab.stateDir, 'lab.json');
  const p = (JSON.parse(readFileSync(file, 'utf8')) as LabJson).processes.find((x) => x.name === name);
  if (!p) throw new Error(`no lab process ${name} in ${file}`);
  const split = (f: string) => readFileSync(`/proc/${p.pid}/${f}`, 'latin1').split('\0').filter((x) => x !== '');
  const argv = split('cmdline');
  const env = Object.fromEntries(split('environ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  process.kill(p.pid, 'SIGKILL');
  return () => {
    const state = JSON.parse(readFileSync(file, 'utf8')) as LabJson;
    const rec = startDetached(argv, p.log, undefined, env);
    Object.assign(state.processes.find((x) => x.name === name)!, rec, { startTime: startTimeOf(rec.pid) ?? rec.startTime });
    writeFileSync(file, JSON.stringify(state, null, 2));
    lab.adopt(rec.pid);
    return rec.pid;
  };
}

/** SIGKILL lab process `name` and start it again at once; returns the new pid. */
export function killAndRestart(lab: TestLab, name: string): number {
  return kill(lab, name)();
}
