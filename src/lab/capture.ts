// `lab capture <link|all>`: the manager has the switch capture the link into a pcap file in the
// switch's socket directory; this reads the file as it grows (one line per frame, unless the
// frames go to -w FILE) until Ctrl-C or --seconds, then stops the capture and keeps or removes
// the file.
import { copyFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { frameLine, PcapTail } from '../manager/capture.ts';
import type { ManagerClient } from '../manager/client.ts';

export interface CaptureResult {
  link: string;
  ports: string[];
  frames: number;
  /** Where the pcap file is (-w), if kept. */
  file?: string;
}

export async function captureLink(
  client: ManagerClient,
  link: string,
  o: { write?: string; seconds?: number; signal: AbortSignal; onFrame?: (line: string) => void; onStart?: (ports: string[]) => void },
): Promise<CaptureResult> {
  const started = await client.call<{ id: number; file: string; ports: string[] }>({ op: 'capture', link });
  const tail = new PcapTail(started.file);
  let frames = 0;
  const drain = () => {
    for (const r of tail.next()) {
      frames++;
      o.onFrame?.(frameLine(r));
    }
  };
  try {
    o.onStart?.(started.ports);
    const end = o.seconds === undefined ? Infinity : Date.now() + o.seconds * 1000;
    while (!o.signal.aborted && Date.now() < end) {
      await sleep(Math.min(200, Math.max(0, end - Date.now())), undefined, { signal: o.signal }).catch(() => {});
      drain();
    }
  } finally {
    const stopped = await client.call<{ frames: number; file: string }>({ op: 'capture-stop', capture: started.id });
    drain();
    tail.close();
    if (o.write) copyFileSync(stopped.file, o.write);
    rmSync(stopped.file, { force: true });
  }
  return { link, ports: started.ports, frames, ...(o.write ? { file: o.write } : {}) };
}
