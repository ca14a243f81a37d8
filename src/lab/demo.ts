// The lab's main job: bring up a topology, run a data-verifying fio on every NVMe namespace
// every guest sees (QEMU's own controllers, directly attached models, remote functions
// reached over PCIeOE alike), all guests at once, print each result, take the lab down.
import { agentExec } from './agent.ts';
import { down, up } from './lab.ts';
import { unlessInterrupted } from './progress.ts';
import { requireState, type VmState } from './state.ts';

export interface DiskCheck {
  vm: string;
  /** Namespace device and its controller's model and serial, as the guest sees them. */
  device: string;
  passed: boolean;
  summary: string;
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
    .filter((l) => /err=|^\s*(read|write): IOPS|^\s*(READ|WRITE): bw|verify/.test(l))
    .join('\n');
}

/** Prints "<dev> <model> <serial>" per NVMe namespace block device of the guest. */
const LIST_NAMESPACES = `for b in /sys/block/nvme*n*; do [ -e "$b" ] || continue; c=$b/device; echo "/dev/$(basename $b) $(tr -d ' ' < $c/model) $(tr -d ' ' < $c/serial)"; done`;

async function verifyVm(vm: VmState, fioSize?: string): Promise<DiskCheck[]> {
  const list = await agentExec(vm.agent, LIST_NAMESPACES);
  const results: DiskCheck[] = [];
  for (const line of list.stdout.trim().split('\n').filter(Boolean)) {
    const [dev, model, serial] = line.split(' ');
    const r = await agentExec(vm.agent, fioVerifyCommand(dev!, fioSize));
    const out = r.stdout + r.stderr;
    const passed = r.status === 0 && /err= 0/.test(out) && !/verify: bad/i.test(out);
    results.push({ vm: vm.name, device: `${dev} (${model}, serial ${serial})`, passed, summary: passed ? fioSummary(out) : out.trim() });
  }
  return results;
}

export async function verifyDisks(fioSize?: string): Promise<DiskCheck[]> {
  const state = requireState();
  return (await Promise.all(state.vms.map((vm) => verifyVm(vm, fioSize)))).flat();
}

export async function demo(topology: string): Promise<boolean> {
  await up(topology);
  try {
    // On Ctrl-C the guests' fio is left to die with them: the lab goes down at once.
    const results = await unlessInterrupted(verifyDisks());
    for (const r of results) {
      console.log(`\n=== ${r.vm} ${r.device}: fio verify=crc32c ${r.passed ? 'PASS' : 'FAIL'} ===`);
      console.log(r.summary);
    }
    const ok = results.length > 0 && results.every((r) => r.passed);
    console.log(`\n${ok ? 'PASS' : 'FAIL'}: ${results.filter((r) => r.passed).length}/${results.length} NVMe namespaces verified`);
    return ok;
  } finally {
    await down();
  }
}
