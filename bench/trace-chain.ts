// Joins the frame traces the processes wrote under PCIEOE_TRACE=DIR (src/fabric/trace.ts) into
// one timeline and prints a stretch of it: each event with the process it happened in and the
// time since the previous event, so a gap in a request's chain shows where it waited.
//
//   npx tsx bench/trace-chain.ts DIR [EVENTS=80] [AT=0.6] [FROM]   (AT: where in the timeline to start, 0-1;
//                                                         FROM: the first event after AT whose name starts so;
//                                                         SECONDS: the summaries cover only this long from there)
//   then a summary: per step kind (process A 'out' -> process B 'rx' ...), the median and p90 gap.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const [dir, eventsArg, atArg, from, secondsArg] = process.argv.slice(2);
if (!dir) {
  console.error('usage: trace-chain.ts DIR [EVENTS] [AT]');
  process.exit(2);
}
interface Ev {
  ns: number;
  proc: string;
  what: string;
  id: string;
}
const evs: Ev[] = [];
for (const f of readdirSync(dir).filter((n) => n.endsWith('.trace'))) {
  const proc = f.replace(/\.trace$/, '');
  for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
    if (!line) continue;
    const [ns, what, ...rest] = line.split(' ');
    evs.push({ ns: Number(ns), proc, what: what!, id: rest.join(' ') });
  }
}
evs.sort((a, b) => a.ns - b.ns);
if (evs.length === 0) throw new Error(`no events in ${dir}`);
const n = Number(eventsArg ?? 80);
let start = Math.floor(evs.length * Number(atArg ?? 0.6));
if (from) while (start < evs.length - 1 && !evs[start]!.what.startsWith(from)) start++;
const width = Math.max(...new Set(evs.map((e) => e.proc.length)));
console.log(`${evs.length} events from ${new Set(evs.map((e) => e.proc)).size} processes; frame id: channel type flags seq ack src-mac-byte tlp`);
for (let i = start; i < Math.min(evs.length, start + n); i++) {
  const e = evs[i]!;
  const gap = i > 0 ? (e.ns - evs[i - 1]!.ns) / 1000 : 0;
  console.log(`${gap.toFixed(1).padStart(9)} µs  ${e.proc.padEnd(width)}  ${e.what.padEnd(5)} ${e.id}`);
}

// The summaries: the whole run, or SECONDS from the start of the printed stretch.
const all = evs;
const windowed = secondsArg ? all.filter((e) => e.ns >= all[start]!.ns && e.ns < all[start]!.ns + Number(secondsArg) * 1e9) : all;

// Gaps between consecutive events, by the pair of steps (process and event).
const byStep = new Map<string, number[]>();
for (let i = 1; i < windowed.length; i++) {
  const a = windowed[i - 1]!;
  const b = windowed[i]!;
  const key = `${a.proc.replace(/-\d+$/, '')} ${a.what} -> ${b.proc.replace(/-\d+$/, '')} ${b.what}`;
  let l = byStep.get(key);
  if (!l) byStep.set(key, (l = []));
  l.push((b.ns - a.ns) / 1000);
}
console.log('\nstep (previous event -> next event)                                count   median µs   p90 µs   total ms');
const rows = [...byStep].map(([k, v]) => {
  v.sort((x, y) => x - y);
  return { k, count: v.length, med: v[v.length >> 1]!, p90: v[Math.floor(v.length * 0.9)]!, total: v.reduce((s, x) => s + x, 0) / 1000 };
});
for (const r of rows.sort((x, y) => y.total - x.total).slice(0, 25)) {
  console.log(`${r.k.padEnd(66)} ${String(r.count).padStart(6)} ${r.med.toFixed(1).padStart(11)} ${r.p90.toFixed(1).padStart(8)} ${r.total.toFixed(1).padStart(10)}`);
}

// Each frame's way through the switch: the sender's tx (port given the frame) and out (sent), the
// switch's rx and out, the receiver's rx. A frame is known by its id (channel, type, flags,
// sequence, ACK, source), which repeats only after 2^16 frames of a channel.

const legs = {
  'sender tx -> out': [] as number[],
  'sender out -> switch rx': [] as number[],
  'switch rx -> out': [] as number[],
  'switch out -> receiver rx': [] as number[],
  // The whole hop, the switch's part included: with an untraced switch (NVME_QD1_TRACE_SWITCH=0) the only one.
  'sender out -> receiver rx': [] as number[],
  'sender tx -> receiver rx': [] as number[],
};
type Way = { tx: number; out?: number; swRx?: number; swOut?: number; rx?: number };
const frames = new Map<string, Way>();
/** No switch trace at all: every frame's hop is taken whole. */
const untracedSwitch = !evs.some((e) => e.proc.startsWith('switch'));
const done: Way[] = [];
for (const e of windowed) {
  if (!e.id || e.id === '-' || e.id.split(' ')[1] === '3') continue; // heartbeats repeat their id
  const sw = e.proc.startsWith('switch');
  if (!sw && e.what === 'tx') {
    const old = frames.get(e.id);
    if (old) done.push(old);
    frames.set(e.id, { tx: e.ns }); // a new frame with this id (ids repeat after 2^16 frames)
    continue;
  }
  const f = frames.get(e.id);
  if (!f) continue;
  if (!sw && e.what.startsWith('out')) f.out ??= e.ns;
  else if (sw && e.what === 'rx') f.swRx ??= e.ns;
  else if (sw && e.what.startsWith('out')) f.swOut ??= e.ns;
  else if (!sw && e.what === 'rx' && f.rx === undefined) {
    f.rx = e.ns;
    done.push(f);
    frames.delete(e.id);
  }
}
for (const f of done) {
  if (f.out === undefined || f.rx === undefined) continue;
  const traced = f.swRx !== undefined && f.swOut !== undefined;
  if (!traced && !untracedSwitch) continue;
  legs['sender tx -> out'].push((f.out - f.tx) / 1000);
  if (f.swRx !== undefined && f.swOut !== undefined) {
    legs['sender out -> switch rx'].push((f.swRx - f.out) / 1000);
    legs['switch rx -> out'].push((f.swOut - f.swRx) / 1000);
    legs['switch out -> receiver rx'].push((f.rx - f.swOut) / 1000);
  }
  legs['sender out -> receiver rx'].push((f.rx - f.out) / 1000);
  legs['sender tx -> receiver rx'].push((f.rx - f.tx) / 1000);
}
console.log('\none frame through the switch (negative: the receiver already had it when the sender recorded "out")');
console.log('leg                                     frames   median µs   p90 µs    mean µs');
for (const [k, v] of Object.entries(legs)) {
  if (v.length === 0) continue;
  v.sort((x, y) => x - y);
  const mean = v.reduce((s, x) => s + x, 0) / v.length;
  console.log(`${k.padEnd(38)} ${String(v.length).padStart(7)} ${v[v.length >> 1]!.toFixed(1).padStart(11)} ${v[Math.floor(v.length * 0.9)]!.toFixed(1).padStart(8)} ${mean.toFixed(1).padStart(10)}`);
}
