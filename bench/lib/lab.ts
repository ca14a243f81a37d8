// Lab set-up shared by the guest benchmarks: a private lab state, pinning, fabric faults.
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A private LAB_STATE and LAB_DATA for one benchmark run. Must run before src/lab/* is
 * imported (paths.ts reads the environment once), hence the dynamic imports in callers.
 */
export function privateLabDirs(prefix: string): string {
  const state = mkdtempSync(`/run/${prefix}-`);
  process.env.LAB_STATE = state;
  process.env.LAB_DATA = state;
  return state;
}

/**
 * The topology file to bring up: as shipped, or with every lab process pinned to the CPUs
 * in NVME_BENCH_PIN (QEMU keeps both), since placement dominates latency here (design notes §8).
 */
export function benchTopology(file: string, _state: string): string {
  // The lab derives most processes from hosts and DIs: it pins them all (see lab.ts).
  if (process.env.NVME_BENCH_PIN) process.env.LAB_PIN_PROCESSES = process.env.NVME_BENCH_PIN;
  return file;
}

export const placementText = () => (process.env.NVME_BENCH_PIN ? `lab processes pinned to CPU ${process.env.NVME_BENCH_PIN}` : 'lab processes unpinned');

export interface FabricLoss {
  set(probability: number): Promise<void>;
  /** Frames lost on purpose so far, summed over the switch's ports. */
  lost(): Promise<number>;
  close(): void;
}

/**
 * Loss on every port of the lab's switch, on the way out of the switch only, so each
 * frame meets the probability once on its way from one station to another.
 */
export async function fabricLoss(state: string, switchProcess = 'sw'): Promise<FabricLoss> {
  const { SwitchControl } = await import('../../src/fabric/switch/control.ts');
  const ctl = await SwitchControl.connect(join(state, 'sockets', switchProcess, 'control.sock'));
  type Report = { faults: { tx: { lost: number } } };
  const ports = async () => (await ctl.must({ counters: true })).ports as Record<string, Report>;
  const names = Object.keys(await ports());
  return {
    async set(p) {
      for (const port of names) await ctl.must({ port, dir: 'tx', set: { loss: p } });
    },
    async lost() {
      return Object.values(await ports()).reduce((n, r) => n + r.faults.tx.lost, 0);
    },
    close: () => ctl.close(),
  };
}
