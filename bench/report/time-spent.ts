// "Where the time goes" for the report: for each headline target the run missed, what the
// run's own CPU figures say about it — how much of the time PCIeOE adds is CPU spent by the
// lab's processes and how much is waiting (wake-ups, round trips), and how many CPUs the lab
// takes at the IOPS it reached on a machine whose guest needs most of them. Only figures of
// this run are used; profiles by function, and what would close each gap, are in the notes
// the section links to.
import type { CpuFigure, Results } from '../lib/results.ts';
import { KERNEL_CATEGORIES, type PerfCategory } from '../lib/perf-record.ts';
import { COEX_CASES, isKind, labCpu, nicFigures, nicRatios, num, QD1_WORKLOAD, qd1AddedUs, QEMU_PROCESS, remoteAndDirect, ROUND_TRIPS, roundTripUs } from './markdown.ts';

/** The notes with the profiles behind this section, relative to a report in reports/bench/<run>/. */
export const PERFORMANCE_NOTES = '../../../docs/performance.md';

/** "sw 99 + di 400 + hi 350 = 849 µs": every lab process in the total, those idle (under 1 µs) left out of the list. */
function labSum(figs: CpuFigure[]): { total: number; text: string } | undefined {
  if (!figs.length) return undefined;
  const total = figs.reduce((a, f) => a + f.us, 0);
  return { total, text: `${figs.filter((f) => f.us >= 1).map((f) => `${f.process} ${num(f.us)}`).join(' + ')} = ${num(total)} µs` };
}

function qd1(r: Results): string | undefined {
  const added = qd1AddedUs(r);
  if (added === undefined || added <= 200) return undefined;
  const cpu = labSum(labCpu(r, QD1_WORKLOAD, 'PCIeOE'));
  const server = labSum(labCpu(r, QD1_WORKLOAD, 'direct'));
  return `**QD 1 added latency (${num(added)} µs, floor 200 µs).** ` +
    (cpu
      ? `The lab's processes spend ${cpu.text} of CPU per PCIeOE I/O` + (server ? ` (the direct-attach server ${num(server.total)} µs)` : '') +
        `: ${num((cpu.total / added) * 100)} % of the added time. A QD 1 read is a chain of dependent frames (doorbell, SQE read and its completion, data + CQE + interrupt), each through the switch, so the rest is each process waiting to be woken and scheduled between them.`
      : 'The run has no CPU figures for the QD 1 case.') +
    profiledQd1(r);
}

/**
 * " By CPU time (…): of the lab's N µs per I/O, …": the soft-driver QD 1 bench's profiled round
 * (perf, kernel included), PCIeOE's processes summed by category; empty when the run has none.
 */
function profiledQd1(r: Results): string {
  const figs = r.figures.filter(isKind('cpu-split')).filter((f) => f.bench === 'nvme-qd1');
  const on = (path: string) => figs.filter((f) => f.path === path);
  const remote = on('PCIeOE');
  if (!remote.length) return '';
  const sum = (fs: typeof figs, pick: (c: PerfCategory) => boolean = () => true) => fs.filter((f) => pick(f.category)).reduce((a, f) => a + f.us, 0);
  const total = sum(remote);
  const share = (pick: (c: PerfCategory) => boolean) => `${num((sum(remote, pick) / total) * 100)} %`;
  const perProcess = [...new Set(remote.map((f) => f.process))].map((p) => `${p} ${num(sum(remote.filter((f) => f.process === p)))}`).join(', ');
  const direct = on('direct');
  return (
    ` By CPU time (the soft-driver QD 1 bench's profiled round, perf record, kernel included): the lab's processes spent ${num(total)} µs per I/O (${perProcess}` +
    (direct.length ? `; the direct-attach server ${num(sum(direct))}` : '') +
    `), ${share((c) => KERNEL_CATEGORIES.includes(c))} of it in the kernel (context switches alone ${share((c) => c === 'context switch')}), ` +
    `${share((c) => c === 'libc')} entering system calls (libc), ${share((c) => c === 'V8 and Node')} in the V8 and Node runtime and ${share((c) => c === 'JavaScript')} in JavaScript: ` +
    'at every hop the kernel\'s part (waking, switching, system calls) and the runtime beneath the code weigh more than the JavaScript that handles the frame.'
  );
}

function large(r: Results): string[] {
  const out: string[] = [];
  for (const workload of ['seq read 64 KiB', 'seq write 64 KiB']) {
    const { remote, direct } = remoteAndDirect(r, workload);
    if (!remote || !direct || remote.iops >= 0.6 * direct.iops) continue;
    const cpu = labSum(labCpu(r, workload, 'PCIeOE'));
    const server = labSum(labCpu(r, workload, 'direct'));
    if (!cpu) continue;
    const qemu = r.figures.filter(isKind('cpu-per-io')).find((f) => f.bench === 'nvme' && f.workload === workload && f.path === 'PCIeOE' && f.process === QEMU_PROCESS);
    out.push(`**${workload} (${num((remote.iops / direct.iops) * 100)} % of direct, floor 60 %).** ` +
      `Lab CPU per I/O ${cpu.text}` + (server ? `, against ${num(server.total)} µs for the direct-attach server (${num(cpu.total / server.total, 1)}×)` : '') +
      `. At the ${num(remote.iops)} IOPS reached that is ${num((cpu.total * remote.iops) / 1e6, 2)} CPUs` +
      (qemu ? `, and QEMU ${num((qemu.us * remote.iops) / 1e6, 2)}` : '') +
      ': the path is bound by CPU per frame (16 TLPs of 4 KiB per I/O), taken from the guest\'s vCPUs.');
  }
  return out;
}

function nic(r: Results): string | undefined {
  const figs = nicFigures(r);
  const [remote, direct] = [figs.find((f) => f.path === 'model PCIeOE'), figs.find((f) => f.path === 'model direct')];
  if (!remote || !direct || remote.aToBMbps >= 0.8 * direct.aToBMbps) return undefined;
  const values = r.figures.filter(isKind('value')).filter((f) => f.bench === 'nic');
  const busy = ['di', 'hia', 'sw'].flatMap((p) => values.filter((f) => f.name === `model PCIeOE: CPU of ${p} during iperf3 A->B`).map((f) => `${p} ${num(f.value)} %`));
  return `**Remote NIC A->B (${num((remote.aToBMbps / direct.aToBMbps) * 100)} % of the model attached directly, target 80 %).** ` +
    (busy.length ? `During iperf3 the DI, HI and switch were busy ${busy.join(', ')} of a CPU, so they mostly wait: ` : '') +
    `each transmit batch waits on dependent reads of guest memory across the fabric, and the guest's TCP keeps only about a millisecond of data queued at the NIC, so throughput follows that round-trip time (ping ${num(remote.pingMeanMs, 2)} ms remote, ${num(direct.pingMeanMs, 2)} ms direct).`;
}

/** NVMe beside iperf3: how full the two CPUs were in each case, from the co-existence bench's CPU figures. */
function coexistence(r: Results): string | undefined {
  const both = nicRatios(r).find((x) => x.workload === 'NVMe both hosts');
  if (both?.percent === undefined || both.percent >= both.target) return undefined;
  const cpu = (c: string, p: string) => r.figures.filter(isKind('value')).find((f) => f.bench === 'nic' && f.name === `NVMe ${c}: CPU of ${p}`)?.value;
  const [alone, under] = COEX_CASES.map((c) => cpu(c, 'all lab processes'));
  const qemus = (c: string) => ['QEMU host-a', 'QEMU host-b'].map((p) => cpu(c, p)).filter((x): x is number => x !== undefined);
  return `**NVMe under iperf3 (${num(both.percent)} % of alone, target 80 %).** ` +
    (alone !== undefined && under !== undefined
      ? `The lab's processes, both QEMUs included, took ${num(alone)} % of a CPU with NVMe alone and ${num(under)} % under iperf3, of the 200 % the machine has` +
        (qemus('under iperf3').length ? ` (the QEMUs ${qemus('alone').map((x) => num(x)).join(' and ')} % alone, ${qemus('under iperf3').map((x) => num(x)).join(' and ')} % under iperf3)` : '') +
        ': both cases are CPU-bound, and the guests\' TCP takes its share from the same vCPUs that run fio. '
      : '') +
    'In the notes\' runs the switch\'s PCIeOE ports never queued a frame, and iperf3 on a guest\'s own loopback, without the NIC or the fabric, cost NVMe as much: the loss is CPU, not the fabric.';
}

/**
 * The read round trip over memif against a raw one: how much of what the read adds is the
 * switch's two hops (the raw ping-pong through the same switch) and how much the link layer and
 * TLP handling at the two ends.
 */
function roundTrip(r: Results): string | undefined {
  const read = roundTripUs(r, ROUND_TRIPS.read, 'memif');
  const raw = roundTripUs(r, ROUND_TRIPS.raw, 'raw memif');
  if (read === undefined || raw === undefined || read <= 2 * raw) return undefined;
  const switched = roundTripUs(r, ROUND_TRIPS.rawSwitched, 'raw memif');
  return `**MRd round trip over memif (${num(read)} µs, ${num((read / raw) * 100)} % of a raw memif round trip, target 200 %).** ` +
    `A raw ping-pong takes ${num(raw)} µs over one memif connection, where the read crosses the switch both ways: four wake-ups of a process, not two. ` +
    (switched !== undefined
      ? `The same ping-pong through the switch takes ${num(switched)} µs, so the switch's hops are ${num(switched - raw)} µs of the ${num(read - raw)} the read adds, and the link layer and TLP handling at the two ends (sequence and ACK, decoding, the completion) the other ${num(read - switched)} µs (the read ${num((read / switched) * 100)} % of the raw round trip on its own path).`
      : 'The run has no raw round trip through the switch to tell the hops from the ends\' handling apart.');
}

/** Paragraphs for the missed headline targets the run has figures to explain; empty when none. */
export function whereTimeGoes(r: Results): string[] {
  return [qd1(r), ...large(r), roundTrip(r), nic(r), coexistence(r)].filter((x): x is string => x !== undefined);
}
