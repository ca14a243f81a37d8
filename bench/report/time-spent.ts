// "Where the time goes" for the report: for each headline target the run missed, what the
// run's own CPU figures say about it — how much of the time PCIeOE adds is CPU spent by the
// lab's processes and how much is waiting (wake-ups, round trips), and how many CPUs the lab
// takes at the IOPS it reached on a machine whose guest needs most of them. Only figures of
// this run are used; profiles by function, and what would close each gap, are in the notes
// the section links to.
import type { CpuFigure, Results } from '../lib/results.ts';
import { ioFigures, nicFigures, QD1_WORKLOAD, QEMU_PROCESS } from './markdown.ts';

/** The notes with the profiles behind this section, relative to a report in reports/bench/<run>/. */
export const PERFORMANCE_NOTES = '../../../docs/performance.md';

const fmt = (x: number, digits = 0) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function cpuOf(r: Results, workload: string, path: string): CpuFigure[] {
  return r.figures.filter((f): f is CpuFigure => f.kind === 'cpu-per-io' && f.bench === 'nvme' && f.workload === workload && f.path === path);
}

/** "sw 99 + di 400 + hi 350 = 849 µs" over the lab's processes (QEMU and idle ones left out). */
function labSum(figs: CpuFigure[]): { total: number; text: string } | undefined {
  const lab = figs.filter((f) => f.process !== QEMU_PROCESS && f.us >= 1);
  if (!lab.length) return undefined;
  const total = lab.reduce((a, f) => a + f.us, 0);
  return { total, text: `${lab.map((f) => `${f.process} ${fmt(f.us)}`).join(' + ')} = ${fmt(total)} µs` };
}

function qd1(r: Results): string | undefined {
  const figs = ioFigures(r, 'nvme').filter((f) => f.workload === QD1_WORKLOAD && !f.lossPercent && !f.addedLatencyUs);
  const [remote, direct] = [figs.find((f) => f.path === 'PCIeOE'), figs.find((f) => f.path === 'direct')];
  if (!remote || !direct) return undefined;
  const added = remote.meanUs - direct.meanUs;
  if (added <= 200) return undefined;
  const cpu = labSum(cpuOf(r, QD1_WORKLOAD, 'PCIeOE'));
  const server = labSum(cpuOf(r, QD1_WORKLOAD, 'direct'));
  return `**QD 1 added latency (${fmt(added)} µs, floor 200 µs).** ` +
    (cpu
      ? `The lab's processes spend ${cpu.text} of CPU per PCIeOE I/O` + (server ? ` (the direct-attach server ${fmt(server.total)} µs)` : '') +
        `: ${fmt((cpu.total / added) * 100)} % of the added time. A QD 1 read is a chain of dependent frames (doorbell, SQE read and its completion, data + CQE + interrupt), each through the switch, so the rest is each process waiting to be woken and scheduled between them.`
      : 'The run has no CPU figures for the QD 1 case.');
}

function large(r: Results): string[] {
  const out: string[] = [];
  for (const workload of ['seq read 64 KiB', 'seq write 64 KiB']) {
    const figs = ioFigures(r, 'nvme').filter((f) => f.workload === workload && !f.lossPercent && !f.addedLatencyUs);
    const [remote, direct] = [figs.find((f) => f.path === 'PCIeOE'), figs.find((f) => f.path === 'direct')];
    if (!remote || !direct || remote.iops >= 0.6 * direct.iops) continue;
    const cpu = labSum(cpuOf(r, workload, 'PCIeOE'));
    const server = labSum(cpuOf(r, workload, 'direct'));
    if (!cpu) continue;
    const qemu = cpuOf(r, workload, 'PCIeOE').find((f) => f.process === QEMU_PROCESS);
    out.push(`**${workload} (${fmt((remote.iops / direct.iops) * 100)} % of direct, floor 60 %).** ` +
      `Lab CPU per I/O ${cpu.text}` + (server ? `, against ${fmt(server.total)} µs for the direct-attach server (${fmt(cpu.total / server.total, 1)}×)` : '') +
      `. At the ${fmt(remote.iops)} IOPS reached that is ${fmt((cpu.total * remote.iops) / 1e6, 2)} CPUs` +
      (qemu ? `, and QEMU ${fmt((qemu.us * remote.iops) / 1e6, 2)}` : '') +
      ': the path is bound by CPU per frame (16 TLPs of 4 KiB per I/O), taken from the guest\'s vCPUs.');
  }
  return out;
}

function nic(r: Results): string | undefined {
  const figs = nicFigures(r);
  const [remote, direct] = [figs.find((f) => f.path === 'model PCIeOE'), figs.find((f) => f.path === 'model direct')];
  if (!remote || !direct || remote.aToBMbps >= 0.8 * direct.aToBMbps) return undefined;
  const cpu = (proc: string) => r.figures.find((f) => f.kind === 'value' && f.bench === 'nic' && f.name === `model PCIeOE: CPU of ${proc} during iperf3 A->B`);
  const busy = ['di', 'hia', 'sw'].map((p) => [p, cpu(p)] as const).filter(([, f]) => f && f.kind === 'value');
  return `**Remote NIC A->B (${fmt((remote.aToBMbps / direct.aToBMbps) * 100)} % of the model attached directly, target 80 %).** ` +
    (busy.length ? `During iperf3 the DI, HI and switch were busy ${busy.map(([p, f]) => `${p} ${fmt((f as { value: number }).value)} %`).join(', ')} of a CPU, so they mostly wait: ` : '') +
    `each transmit batch waits on dependent reads of guest memory across the fabric, and the guest's TCP keeps only about a millisecond of data queued at the NIC, so throughput follows that round-trip time (ping ${fmt(remote.pingMeanMs, 2)} ms remote, ${fmt(direct.pingMeanMs, 2)} ms direct).`;
}

/** Paragraphs for the missed headline targets the run has figures to explain; empty when none. */
export function whereTimeGoes(r: Results): string[] {
  return [qd1(r), ...large(r), nic(r)].filter((x): x is string => x !== undefined);
}
