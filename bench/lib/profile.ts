// CPU profiles of running lab processes over a stretch of a benchmark, through their control
// sockets ({"profile":"start"} / {"profile":"stop","file":...}, common/control-socket.ts), and
// a summary of where each spent its time: self time per function, most first.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SwitchControl } from '../../src/fabric/switch/control.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
}

/** Self time per function (name, file:line), most first: the top `n` lines, with their share of the samples. */
export function summariseProfile(file: string, n = 15): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const total = p.samples.length;
  const byFn = new Map<string, number>();
  for (const node of p.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const key = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(src|node_modules)\//, '$1/')}:${lineNumber + 1}`;
    byFn.set(key, (byFn.get(key) ?? 0) + (node.hitCount ?? 0));
  }
  const seconds = (p.endTime - p.startTime) / 1e6;
  const idle = [...byFn].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, h]) => a + h, 0);
  return [
    `${total} samples over ${seconds.toFixed(1)} s, ${(((total - idle) / total) * 100).toFixed(0)} % busy`,
    ...[...byFn].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, h]) => `${((h / total) * 100).toFixed(1).padStart(5)} %  ${k}`),
  ].join('\n');
}

/**
 * Profiles the processes whose state directories are given (name -> LAB_STATE/sockets/<name>)
 * while `run` runs; resolves with run's value and each profile's file.
 */
export async function profiled<T>(dirs: Record<string, string>, tag: string, run: () => Promise<T>): Promise<{ value: T; files: Record<string, string> }> {
  const ctls = await Promise.all(Object.entries(dirs).map(async ([name, dir]) => ({ name, dir, ctl: await SwitchControl.connect(join(dir, 'control.sock')) })));
  const must = async (ctl: SwitchControl, req: object) => {
    const r = await ctl.requestLine(JSON.stringify(req));
    if (!r.ok) throw new Error(`profile ${JSON.stringify(req)}: ${r.error}`);
  };
  try {
    for (const c of ctls) await must(c.ctl, { profile: 'start' });
    const value = await run();
    const files: Record<string, string> = {};
    for (const c of ctls) {
      const file = `${tag}-${c.name}.${Date.now()}.cpuprofile`;
      await must(c.ctl, { profile: 'stop', file });
      files[c.name] = join(c.dir, file);
    }
    return { value, files };
  } finally {
    for (const c of ctls) c.ctl.close();
  }
}

/** A lab process's counters ({"stats":true} on the control socket in `dir`), flattened to dotted names ("nics.net0.txFrames"). */
export async function stationCounters(dir: string): Promise<Map<string, number>> {
  const ctl = await SwitchControl.connect(join(dir, 'control.sock'));
  try {
    const out = new Map<string, number>();
    const walk = (o: unknown, at: string): void => {
      if (typeof o === 'number') out.set(at, o);
      else if (o && typeof o === 'object') for (const [k, v] of Object.entries(o)) walk(v, at ? `${at}.${k}` : k);
    };
    const r = (await ctl.requestLine('{"stats":true}')) as Record<string, unknown>;
    if (!r.ok) throw new Error(`stats of ${dir}: ${String(r.error)}`);
    walk(r, '');
    return out;
  } finally {
    ctl.close();
  }
}

/** How far each counter moved between two readings of stationCounters (those that moved), by name. */
export function movedCounters(before: Map<string, number>, after: Map<string, number>): [string, number][] {
  return [...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)] as [string, number]).filter(([, d]) => d !== 0);
}
