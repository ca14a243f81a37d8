// The lab's main job: bring up a topology, run a data-verifying fio on every NVMe disk of
// every guest at once, print each result, and take the lab down again.
import { agentExec } from './agent.ts';
import { down, up } from './lab.ts';
import { nvmeSerial } from './qemu-args.ts';
import { loadTopology } from './topology.ts';

export interface DiskCheck {
  vm: string;
  device: string;
  passed: boolean;
  summary: string;
}

/** A bash snippet printing the /dev node of the NVMe namespace whose controller has `serial`. */
export function nvmeDevBySerial(serial: string): string {
  return `for c in /sys/class/nvme/nvme*; do [ "$(tr -d ' ' < $c/serial)" = "${serial}" ] && echo /dev/$(basename $c)n1; done`;
}

export function fioVerifyCommand(dev: string, size = '64M'): string {
  return [
    'fio --name=lab-verify --filename=' + dev,
    '--ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=32',
    `--size=${size} --verify=crc32c --verify_fatal=1 --do_verify=1`,
  ].join(' ');
}

/** The lines of fio's report that say what ran and how it went. */
export function fioSummary(out: string): string {
  return out
    .split('\n')
    .filter((l) => /^device |err=|^\s*(read|write): IOPS|^\s*(READ|WRITE): bw|verify/.test(l))
    .join('\n');
}

export async function verifyDisks(file: string, fioSize?: string): Promise<DiskCheck[]> {
  const topo = loadTopology(file);
  const state = (await import('./state.ts')).requireState();
  const jobs = topo.vms.flatMap((vm) =>
    vm.devices.filter((d) => d.type === 'nvme').map(async (d): Promise<DiskCheck> => {
      const agent = state.vms.find((v) => v.name === vm.name)!.agent;
      const serial = nvmeSerial(vm.name, d.id);
      const script = `set -e; dev=$(${nvmeDevBySerial(serial)}); [ -n "$dev" ] || { echo "no NVMe controller with serial ${serial}" >&2; exit 1; }; echo "device $dev"; ${fioVerifyCommand('$dev', fioSize)}`;
      const r = await agentExec(agent, script);
      const out = r.stdout + r.stderr;
      const passed = r.status === 0 && /err= 0/.test(out) && !/verify: bad/i.test(out);
      return { vm: vm.name, device: d.id, passed, summary: passed ? fioSummary(out) : out.trim() };
    }),
  );
  return Promise.all(jobs);
}

export async function demo(topology: string): Promise<boolean> {
  const state = await up(topology);
  try {
    const results = await verifyDisks(state.file);
    for (const r of results) {
      console.log(`\n=== ${r.vm} / ${r.device}: fio verify=crc32c ${r.passed ? 'PASS' : 'FAIL'} ===`);
      console.log(r.summary);
    }
    const ok = results.length > 0 && results.every((r) => r.passed);
    console.log(`\n${ok ? 'PASS' : 'FAIL'}: ${results.filter((r) => r.passed).length}/${results.length} disks verified`);
    return ok;
  } finally {
    await down();
  }
}
