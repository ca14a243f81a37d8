// The benchmark report generator on a recorded results file (no QEMU): tables carry the
// recorded figures, ratios are computed from them alone, plots are SVG, and figures the run
// does not have are reported as missing rather than filled in.
import test from 'ava';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRecorded, readResults, record, recordSettings } from '../../bench/lib/results.ts';
import { writeReport } from '../../bench/report/generate.ts';
import { whereTimeGoes } from '../../bench/report/time-spent.ts';
import type { PerfCategory } from '../../bench/lib/perf-record.ts';
import { againstTarget, hotplugFigureName, labCpuRatios, missingFigures, nicMethod, nicRatios, nvmeRatios, otherChecks, renderMarkdown, ROUND_TRIPS } from '../../bench/report/markdown.ts';

const fixture = new URL('../fixtures/bench-report.json', import.meta.url).pathname;

function generated(t: { teardown(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-report-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('report.md has the versions, settings and every recorded IOPS figure in its table', async (t) => {
  const dir = generated(t);
  const results = readResults(fixture);
  await writeReport(results, dir);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  for (const s of ['v20.20.2', 'QEMU emulator version 10.1.2', '6.12.57', results.versions.gitCommit, 'topology one-host-nvme-bench', 'Quick run'])
    t.true(md.includes(s), `report names ${s}`);
  // The randread 512 B row: QEMU nvme, direct, PCIeOE IOPS as recorded, in that order.
  const row = md.split('\n').find((l) => l.startsWith('| randread 512 B |'));
  t.truthy(row);
  t.regex(row!, /\| 21,040 \|.*\| 12,260 \|.*\| 7,420 \|/);
});

test('ratios come from the run\'s figures and are marked against their targets', async (t) => {
  const results = readResults(fixture);
  const ratios = nvmeRatios(results);
  const get = (w: string, what: string) => ratios.find((r) => r.workload === w && r.what === what)!;
  t.is(get('randread 512 B', 'PCIeOE / direct').percent, (7420 / 12260) * 100);
  t.is(get('randread 512 B', 'PCIeOE / direct').target, 90);
  t.is(get('seq read 64 KiB', 'PCIeOE / direct').target, 80);
  t.is(get('randread 512 B', 'direct / QEMU nvme').percent, (12260 / 21040) * 100);
  t.is(get('randread 512 B', 'PCIeOE 0.1 % loss / PCIeOE').percent, (6650 / 7420) * 100);
  // Lab CPU: HI + switch + DI on PCIeOE against the direct-attach server, QEMU left out.
  const cpu = labCpuRatios(results).find((r) => r.workload === 'randread 512 B')!;
  t.is(cpu.percent, ((31.3 + 12.6 + 27.9) / 22.7) * 100);
  t.deepEqual(labCpuRatios(results).map((r) => r.workload), ['randread 512 B', 'randwrite 512 B', 'randrw 70 % read 4 KiB']);
  const dir = generated(t);
  await writeReport(results, dir);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  t.regex(md, /\| randread 512 B \| PCIeOE \/ direct \| 61 % \| ≥ 90 % \| missed \|/);
  t.regex(md, /\| randread 512 B \| PCIeOE 0.1 % loss \/ PCIeOE \| 90 % \| ≥ 85 % \| met \|/);
  t.regex(md, /\| randread 512 B \| lab CPU per I\/O, PCIeOE \/ direct \| 316 % \| ≤ 150 % \| missed \|/);
  // QD 1: what the fabric adds over direct attach, from the two recorded means.
  t.regex(md, /\| PCIeOE \| 1,690 \|.*\| 1,443 µs \|/);
});

test('a value beside its target never reads as the target when the verdict goes the other way', (t) => {
  t.is(againstTarget(89.98, 90, '%'), '89.98 %', 'missed by a hair: decimals until it differs');
  t.is(againstTarget(89.6, 90, '%'), '89.6 %');
  t.is(againstTarget(200.4, 200, 'µs'), '200.4 µs');
  t.is(againstTarget(90, 90, '%'), '90 %', 'exactly the target stays whole');
  t.is(againstTarget(74.4, 90, '%'), '74 %', 'far from it: whole');
  t.is(againstTarget(22.704, 10, 'Gb/s', 2), '22.70 Gb/s');
});

test('lab CPU: a process recorded as idling beside a path (serves: false) is left out of that path\'s sum', (t) => {
  const results = readResults(fixture);
  const idle = { kind: 'cpu-per-io' as const, bench: 'nvme', workload: 'randread 512 B', us: 5, serves: false };
  const withIdle = { ...results, figures: [...results.figures, { ...idle, path: 'PCIeOE', process: 'b2b-di' }, { ...idle, path: 'direct', process: 'sw' }] };
  const cpu = (r: typeof results) => labCpuRatios(r).find((x) => x.workload === 'randread 512 B')!.percent;
  t.is(cpu(withIdle), cpu(results));
  // Unmarked (a run recorded before the field), they count.
  const unmarked = { ...results, figures: [...results.figures, { ...idle, serves: undefined, path: 'direct', process: 'sw' }] };
  t.is(cpu(unmarked), ((31.3 + 12.6 + 27.9) / (22.7 + 5)) * 100);
});

test('fabric and QD 1 targets from the run\'s figures, in the spread placement; missing where a figure is', async (t) => {
  const checks = new Map(otherChecks(readResults(fixture)).map((c) => [c.what, c.value]));
  t.is(checks.get('QD 1 4 KiB randread: PCIeOE mean added over direct'), 1690 - 247);
  t.is(checks.get('one memif link through the switch (spread)'), 11.2);
  t.is(checks.get('two shaped unix dgram links / one (spread)'), (0.97 / 0.49) * 100);
  // No raw memif round trip and no shaped memif links were recorded.
  t.is(checks.get('MRd round trip over memif / raw memif round trip (spread)'), undefined);
  t.is(checks.get('two shaped memif links / one (spread)'), undefined);
  const dir = generated(t);
  await writeReport(readResults(fixture), dir);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  t.regex(md, /\| one memif link through the switch \(spread\) \| 11.20 Gb\/s \| ≥ 10 Gb\/s \| met \|/);
  t.regex(md, /\| QD 1 added latency, the issue's floor \| 1,443 µs \| ≤ 200 µs \| missed \|/);
  t.regex(md, /\| two shaped memif links \/ one \(spread\) \| missing \| ≥ 180 % \|  \|$/m);
});

test('QD 1 back to back: a check of its own when the run has the path, none when it has not', (t) => {
  const results = readResults(fixture);
  const what = 'QD 1 added latency, HI and DI back to back (no switch process)';
  t.false(otherChecks(results).some((c) => c.what === what));
  const pcieoe = results.figures.find((f) => f.kind === 'io' && f.workload === 'QD 1 randread 4 KiB' && f.path === 'PCIeOE')!;
  const b2b = { ...pcieoe, path: 'PCIeOE back to back', meanUs: 400 };
  const checks = new Map(otherChecks({ ...results, figures: [...results.figures, b2b] }).map((c) => [c.what, c.value]));
  t.is(checks.get(what), 400 - 247);
  t.is(checks.get('QD 1 4 KiB randread: PCIeOE mean added over direct'), 1690 - 247);
});

test('figures the run lacks are reported missing, never invented', async (t) => {
  const results = readResults(fixture);
  // The fixture has no PCIeOE seq write 64 KiB, lossy runs for one workload only, no 1 % loss,
  // no added latency, no sharing, no two memif links; boot failed.
  const ratios = nvmeRatios(results);
  t.is(ratios.find((r) => r.workload === 'seq write 64 KiB' && r.what === 'PCIeOE / direct')!.percent, undefined);
  t.is(ratios.find((r) => r.workload === 'randwrite 512 B' && r.what === 'PCIeOE 0.1 % loss / PCIeOE')!.percent, undefined);
  const missing = missingFigures(results);
  for (const m of ['seq write 64 KiB: PCIeOE', 'IOPS with 1 % frame loss', 'IOPS with 50 µs added link latency', 'sharing 2:1 (sharing not run)', 'sharing 1:2 (sharing not run)', 'fabric throughput, 2 memif links', 'benchmark boot failed: its figures may be partial'])
    t.true(missing.includes(m), `missing lists "${m}"`);
  t.false(missing.some((m) => m.includes('0.1 % frame loss')), 'the 0.1 % loss run is there');
  t.false(missing.some((m) => m.startsWith('randread 512 B')), 'randread 512 B has every path');
  const dir = generated(t);
  await writeReport(results, dir);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const row = md.split('\n').find((l) => l.startsWith('| seq write 64 KiB |'))!;
  t.regex(row, /\| missing \| missing \| missing \|$/, 'the PCIeOE cells of the missing case say so');
  t.regex(md, /\| seq write 64 KiB \| PCIeOE \/ direct \| missing \|/);
  t.regex(md, /## Sharing \(2:1, 1:2\)\n\nNo figures in this run\./);
});

test('plots are SVG drawn from the recorded figures and embedded in the report', async (t) => {
  const dir = generated(t);
  const files = await writeReport(readResults(fixture), dir);
  t.deepEqual(files.sort(), ['cpu.svg', 'fabric.svg', 'faults.svg', 'iops.svg', 'qd1.svg', 'report.md']);
  t.deepEqual(readdirSync(dir).sort(), files.sort());
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  for (const f of files.filter((f) => f.endsWith('.svg'))) {
    const svg = readFileSync(join(dir, f), 'utf8');
    t.regex(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/, `${f} is SVG`);
    t.true(svg.includes('<path') || svg.includes('<rect'), `${f} draws marks`);
    t.true(md.includes(`](${f})`), `report embeds ${f}`);
  }
  // Axis labels come from the data: the paths and the placements recorded.
  t.true(readFileSync(join(dir, 'iops.svg'), 'utf8').includes('PCIeOE'));
  t.true(readFileSync(join(dir, 'fabric.svg'), 'utf8').includes('spread'));
  t.true(readFileSync(join(dir, 'faults.svg'), 'utf8').includes('+200 µs link'));
});

test('faults: each faulted PCIeOE run beside the fault-free one of its workload, QD 1 included; the IOPS plot keeps to fault-free paths', async (t) => {
  const dir = generated(t);
  await writeReport(readResults(fixture), dir);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const section = md.slice(md.indexOf('## PCIeOE under fabric faults'), md.indexOf('## QD 1 latency'));
  t.regex(section, /\| workload \| PCIeOE IOPS \| mean µs \| 0.1 % loss IOPS \| mean µs \| \+10 µs link IOPS \| mean µs \| \+200 µs link IOPS \| mean µs \|/);
  t.regex(section, /\| randread 512 B \| 7,420 \| [0-9,]+ \| 6,650 \(90 %\) \| 9,624 \| 7,050 \(95 %\) \| 9,080 \| 5,936 \(80 %\) \| 10,780 \|/);
  t.regex(section, /\| QD 1 randread 4 KiB \| 590 \| 1,690 \| missing \| missing \| missing \| missing \| 401 \(68 %\) \| 2,490 \|/);
  // QD 1 with 200 µs more per crossing: its table shows what it adds over direct.
  t.regex(md, /\| PCIeOE \+200 µs link \| 2,490 \| 4,400 \| 401 \| 2,243 µs \|/);
  t.regex(section, /a link latency L should add 4 L to its mean\. Measured, with the switch's CPU per I\/O \(switch 13 µs without delay\): \+200 µs: 800 µs more \(800 µs of delay\), switch 62 µs\./);
  t.false(readFileSync(join(dir, 'iops.svg'), 'utf8').includes('µs link'));
});

test('an empty run gives a report of missing figures and no plots', async (t) => {
  const empty = { ...readResults(fixture), figures: [], failed: [] };
  const dir = generated(t);
  t.deepEqual(await writeReport(empty, dir), ['report.md']);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  t.regex(md, /## NVMe IOPS and latency per workload and path\n\nNo figures in this run\./);
  t.true(md.includes('- randread 512 B: QEMU nvme, direct, PCIeOE'));
  t.true(md.includes('- CPU µs per I/O'));
});

test('benchmark processes record figures and settings into the BENCH_RESULTS file; bad lines are refused by line', (t) => {
  const dir = generated(t);
  const file = join(dir, 'figures.jsonl');
  const before = process.env.BENCH_RESULTS;
  process.env.BENCH_RESULTS = file;
  t.teardown(() => (before === undefined ? delete process.env.BENCH_RESULTS : (process.env.BENCH_RESULTS = before)));
  recordSettings('nvme', { seconds: 5 });
  record({ kind: 'io', bench: 'nvme', workload: 'randread 512 B', path: 'direct', iops: 1000, meanUs: 64, p99Us: 120 });
  recordSettings('nvme', { topology: 't' });
  const { figures, settings } = readRecorded(file);
  t.deepEqual(settings, { nvme: { seconds: 5, topology: 't' } });
  t.is(figures.length, 1);
  t.throws(() => record({ kind: 'io', bench: 'nvme', workload: 'w', path: 'p', iops: 'many' } as never));
  t.deepEqual(readRecorded(join(dir, 'absent.jsonl')), { figures: [], settings: {} });
});

// The NIC section (issue 14), on a recorded run of bench/nic.ts alone (2026-12-02 15:32 UTC, --quick).
const nicFixture = new URL('../fixtures/bench-report-nic.json', import.meta.url).pathname;

test('NIC: throughput and ping per path, ratios against issue 14\'s targets from the run\'s figures alone', async (t) => {
  const results = readResults(nicFixture);
  const nic = (p: string) => results.figures.find((f) => f.kind === 'nic' && f.path === p) as { aToBMbps: number; bToAMbps: number; pingMeanMs: number; pingP99Ms: number };
  const iops = (p: string) => (results.figures.find((f) => f.kind === 'io' && f.bench === 'nic' && f.path === p) as { iops: number }).iops;
  const ratios = nicRatios(results);
  const get = (w: string, what: string) => ratios.find((r) => r.workload === w && r.what === what)!;
  t.is(get('iperf3 TCP A->B', 'model PCIeOE / model direct').percent, (nic('model PCIeOE').aToBMbps / nic('model direct').aToBMbps) * 100);
  t.is(get('iperf3 TCP B->A', 'model direct / QEMU virtio-net').percent, (nic('model direct').bToAMbps / nic('QEMU virtio-net').bToAMbps) * 100);
  t.is(get('iperf3 TCP A->B', 'model PCIeOE / model direct').target, 80);
  t.is(get('iperf3 TCP A->B', 'model direct / QEMU virtio-net').target, 50);
  t.is(get('NVMe host-a', 'IOPS under iperf3 / alone').percent, (iops('host-a under iperf3') / iops('host-a alone')) * 100);
  t.is(get('NVMe both hosts', 'IOPS under iperf3 / alone').percent,
    ((iops('host-a under iperf3') + iops('host-b under iperf3')) / (iops('host-a alone') + iops('host-b alone'))) * 100);
  const dir = generated(t);
  const files = await writeReport(results, dir);
  t.deepEqual(files.sort(), ['coexistence.svg', 'nic.svg', 'report.md']);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const section = md.slice(md.indexOf('## NIC paths and PCIeOE beside Ethernet'));
  const fmt = (x: number, d = 0) => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  // The fixture was recorded before iperf3's retransmit counts were: they are missing, not zero.
  for (const p of ['QEMU virtio-net', 'model direct', 'model PCIeOE']) {
    const f = nic(p);
    t.true(section.includes(`| ${p} | ${fmt(f.aToBMbps)} | missing | ${fmt(f.bToAMbps)} | missing | ${fmt(f.pingMeanMs, 2)} | ${fmt(f.pingP99Ms, 2)} | 200 |`), `${p} row`);
  }
  const pct = (x: number) => `${x.toFixed(0)} %`;
  const verdict = (x: number, target: number) => (x >= target ? 'met' : 'missed');
  const row = (w: string, what: string) => {
    const r = get(w, what);
    return `| ${w} | ${what} | ${pct(r.percent!)} | ≥ ${r.target} % | ${verdict(r.percent!, r.target)} |`;
  };
  for (const [w, what] of [['iperf3 TCP A->B', 'model PCIeOE / model direct'], ['iperf3 TCP A->B', 'model direct / QEMU virtio-net'], ['NVMe both hosts', 'IOPS under iperf3 / alone']])
    t.true(section.includes(row(w, what)), row(w, what));
  // Per-port counters: frames per second over each case, PCIeOE links and NIC wires named so.
  const port = (p: string, c: string) => results.figures.find((f) => f.kind === 'port-counters' && f.port === p && f.case === c) as { rxFrames: number; seconds: number };
  const perS = (p: string, c: string) => fmt(port(p, c).rxFrames / port(p, c).seconds);
  t.true(section.includes(`| di-net0 | Ethernet | ${perS('di-net0', 'alone')} |`));
  t.true(section.includes(`| di0 | PCIeOE | ${perS('di0', 'alone')} |`));
  t.regex(section, new RegExp(`\\| b \\| Ethernet \\| [\\d,]+ \\| [\\d.]+ \\| missing \\| ${perS('b', 'under iperf3')} \\|`));
  t.true(section.includes('](nic.svg)') && section.includes('](coexistence.svg)'));
  // Recorded before bench/nic.ts measured the paths in one lab: the report says each had its own.
  t.true(section.includes('Each NIC path was measured in a lab of its own'));
  const svg = readFileSync(join(dir, 'nic.svg'), 'utf8');
  t.regex(svg, /^<svg /);
  t.true(svg.includes('model PCIeOE'));
  t.true(readFileSync(join(dir, 'coexistence.svg'), 'utf8').includes('under iperf3'));
  t.deepEqual(missingFigures(results).filter((m) => /NIC|NVMe IOPS host|per-port/.test(m)), []);
});

test('NIC: a run that measured the paths in one lab says so above the NIC table', async (t) => {
  const recorded = readResults(nicFixture);
  const how = 'alternately in one lab (nic-bench, host A with all three NICs), in turn in each of 3 round(s), each figure the median';
  const results = { ...recorded, settings: { ...recorded.settings, nic: { ...recorded.settings.nic, nicPaths: how } } };
  t.is(nicMethod(results), `The NIC paths were measured ${how}.`);
  const dir = generated(t);
  await writeReport(results, dir);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  const section = md.slice(md.indexOf('## NIC paths and PCIeOE beside Ethernet'));
  const said = section.indexOf(`The NIC paths were measured ${how}.`);
  t.true(said >= 0 && said < section.indexOf('| path | TCP A->B'), 'said above the table');
  t.false(section.includes('in a lab of its own'));
});

test('NIC: NVMe under iperf3 below its target is explained from the co-existence CPU figures; nothing when met', (t) => {
  const recorded = readResults(nicFixture);
  // Half the IOPS under iperf3 the fixture recorded: a run that misses the target.
  const results = { ...recorded, figures: recorded.figures.map((f) => (f.kind === 'io' && f.bench === 'nic' && f.path.endsWith('under iperf3') ? { ...f, iops: f.iops / 2 } : f)) };
  const cpu = (c: string, p: string, value: number) => results.figures.push({ kind: 'value', bench: 'nic', name: `NVMe ${c}: CPU of ${p}`, value, unit: '% of a CPU' });
  cpu('alone', 'all lab processes', 181.4);
  cpu('under iperf3', 'all lab processes', 193.6);
  cpu('alone', 'QEMU host-a', 61);
  cpu('alone', 'QEMU host-b', 58);
  cpu('under iperf3', 'QEMU host-a', 63);
  cpu('under iperf3', 'QEMU host-b', 66);
  const both = nicRatios(results).find((r) => r.workload === 'NVMe both hosts')!.percent!;
  t.true(both < 80, 'the fixture misses the target');
  const p = whereTimeGoes(results).find((x) => x.startsWith('**NVMe under iperf3'))!;
  t.truthy(p);
  t.true(p.includes(`(${both.toFixed(0)} % of alone, target 80 %)`), p);
  t.true(p.includes('181 % of a CPU with NVMe alone and 194 % under iperf3'), p);
  t.true(p.includes('(the QEMUs 61 and 58 % alone, 63 and 66 % under iperf3)'), p);
  // Met: nothing said.
  const met = { ...results, figures: results.figures.map((f) => (f.kind === 'io' && f.bench === 'nic' && f.path.endsWith('under iperf3') ? { ...f, iops: 1e9 } : f)) };
  t.false(whereTimeGoes(met).some((x) => x.startsWith('**NVMe under iperf3')));
});

test('NIC: a run without bench nic lists its figures as missing and computes no ratio', (t) => {
  const results = readResults(fixture);
  t.true(nicRatios(results).every((r) => r.percent === undefined));
  const missing = missingFigures(results);
  for (const m of ['NIC model PCIeOE: iperf3 and ping (nic not run)', 'NVMe IOPS host-a under iperf3 (nic not run)', 'switch per-port counters during the co-existence cases (nic not run)'])
    t.true(missing.includes(m), m);
});

test('hot-plug: the flows bench/hotplug.ts recorded get their own table; a run without it lists them missing', async (t) => {
  const without = readResults(fixture);
  t.true(missingFigures(without).includes('hot-plug: unassign to slot empty (hotplug not run)'));
  const results = readResults(fixture);
  results.benches.push('hotplug');
  for (const [flow, s, m] of [['assign', 1.13, 0.41], ['unassign', 0.96, 0.71], ['move', 1.8, 1.08]] as const) {
    results.figures.push({ kind: 'value', bench: 'hotplug', name: hotplugFigureName(flow), value: s, unit: 's' });
    results.figures.push({ kind: 'value', bench: 'hotplug', name: hotplugFigureName(flow, true), value: m, unit: 's' });
  }
  t.false(missingFigures(results).some((m) => m.startsWith('hot-plug')));
  const dir = generated(t);
  await writeReport(results, dir);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  t.regex(md, /## Hot-plug flows \(issue 12\)\n\n[^#]*\| unassign to slot empty \| 0\.96 \| 0\.71 \|/);
  t.regex(md, /\| move to nvme driver bound on the new host \| 1\.80? \| 1\.08 \|/);
});

test('where the time goes: each missed headline target explained from the run\'s own CPU figures; nothing for a target met', async (t) => {
  const results = readResults(fixture);
  const paragraphs = whereTimeGoes(results);
  // QD 1: added 1 690 - 247 µs; the lab's processes hi + sw + di (QEMU left out) per I/O.
  const qd1 = paragraphs.find((p) => p.startsWith('**QD 1 added latency'))!;
  t.truthy(qd1);
  t.true(qd1.includes('1,443 µs'), qd1);
  t.true(qd1.includes('hi 31 + sw 13 + di 28 = 72 µs'), qd1);
  t.true(qd1.includes(`${((71.8 / 1443) * 100).toFixed(0)} % of the added time`), qd1);
  // seq read 64 KiB: 410 of 2 150 IOPS, lab CPU against the direct-attach server's 22.7 µs.
  const read = paragraphs.find((p) => p.startsWith('**seq read 64 KiB'))!;
  t.true(read.includes('(19 % of direct'), read);
  t.true(read.includes('(3.2×)'), read);
  // seq write 64 KiB has no PCIeOE figure in the fixture: nothing said, nothing invented.
  t.false(paragraphs.some((p) => p.startsWith('**seq write 64 KiB')));
  const dir = generated(t);
  await writeReport(results, dir);
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  t.true(md.includes('## Where the time goes\n\n**QD 1 added latency'));
  // Without a profiled round the paragraph says nothing of it; with one, the split summed over PCIeOE's processes.
  t.false(qd1.includes('By CPU time'));
  const split = (path: string, process: string, category: PerfCategory, us: number) => ({ kind: 'cpu-split' as const, bench: 'nvme-qd1', workload: 'soft driver QD 1 4 KiB read', path, process, category, us });
  const profiled = {
    ...results,
    figures: [
      ...results.figures,
      split('PCIeOE', 'switch', 'context switch', 30),
      split('PCIeOE', 'switch', 'libc', 20),
      split('PCIeOE', 'hi', 'V8 and Node', 60),
      split('PCIeOE', 'hi', 'JavaScript', 30),
      split('PCIeOE', 'hi', 'other kernel', 60),
      split('direct', 'direct', 'V8 and Node', 50),
    ],
  };
  const withSplit = whereTimeGoes(profiled).find((p) => p.startsWith('**QD 1 added latency'))!;
  t.true(withSplit.includes("the lab's processes spent 200 µs per I/O (switch 50, hi 150; the direct-attach server 50)"), withSplit);
  t.true(withSplit.includes('45 % of it in the kernel (context switches alone 15 %), 10 % entering system calls (libc), 30 % in the V8 and Node runtime and 15 % in JavaScript'), withSplit);
  // The split's own table: a row per path and process, a column per category the run has.
  t.regex(renderMarkdown(profiled), /\| path \| process \| total \| context switch \| libc \| V8 and Node \| JavaScript \| other kernel \|\n[^\n]+\n\| PCIeOE \| switch \| 50 \| 30 \| 20 \| 0 \| 0 \| 0 \|\n\| PCIeOE \| hi \| 150 \| 0 \| 0 \| 60 \| 30 \| 60 \|\n\| direct \| direct \| 50 \| 0 \| 0 \| 50 \| 0 \| 0 \|/);
  t.regex(renderMarkdown(results), /## Where a QD 1 I\/O's CPU goes, by category \(perf\)\n\nNo figures in this run\./);
  // A run that meets the QD 1 floor says nothing about it.
  const met = { ...results, figures: results.figures.map((f) => (f.kind === 'io' && f.workload === 'QD 1 randread 4 KiB' && f.path === 'PCIeOE' ? { ...f, meanUs: 400 } : f)) };
  t.false(whereTimeGoes(met).some((p) => p.startsWith('**QD 1')));
});

test('where the time goes: a read round trip over twice the raw one is split into the switch\'s hops and the ends\' handling', (t) => {
  const results = readResults(fixture);
  const rtt = (what: string, transport: string, medianUs: number) => ({ kind: 'round-trip' as const, bench: 'fabric', placement: 'spread', what, transport, medianUs, meanUs: medianUs });
  const read = rtt(ROUND_TRIPS.read, 'memif', 180);
  const raw = rtt(ROUND_TRIPS.raw, 'raw memif', 77);
  const paragraph = (...figs: ReturnType<typeof rtt>[]) => whereTimeGoes({ ...results, figures: [...results.figures, ...figs] }).find((p) => p.startsWith('**MRd round trip'));
  const full = paragraph(read, raw, rtt(ROUND_TRIPS.rawSwitched, 'raw memif', 130))!;
  t.true(full.startsWith('**MRd round trip over memif (180 µs, 234 % of a raw memif round trip, target 200 %).**'), full);
  t.true(full.includes("so the switch's hops are 53 µs of the 103 the read adds"), full);
  t.true(full.includes('the other 50 µs (the read 138 % of the raw round trip on its own path)'), full);
  // The raw unix-datagram round trip through the switch is no stand-in for memif's.
  const without = paragraph(read, raw, rtt(ROUND_TRIPS.rawSwitched, 'raw unix dgram', 130))!;
  t.true(without.includes('no raw round trip through the switch'), without);
  // Within twice the raw round trip: nothing said.
  t.is(paragraph(rtt(ROUND_TRIPS.read, 'memif', 150), raw), undefined);
  t.is(otherChecks({ ...results, figures: [...results.figures, read, raw] }).find((c) => c.what.startsWith('MRd round trip over memif'))!.value, (180 / 77) * 100);
});
