// What the virtio-net unit tests share: test frames, a running device behind the soft driver,
// and the check that a driver error sets DEVICE_NEEDS_RESET and a reset recovers.
import type { ExecutionContext } from 'ava';
import type { GuestMemory } from '../../src/devices/nvme/soft-host.ts';
import { SoftVirtioNetDriver } from '../../src/devices/virtio-net/soft-driver.ts';
import { DeviceStatus } from '../../src/devices/virtio-net/virtio-pci.ts';

export const RUNNING = DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk;

export type RigConfig = ConstructorParameters<typeof SoftVirtioNetDriver>[0];

/** An Ethernet frame of `len` bytes whose payload is a counting pattern from `seed`. */
export function frame(len: number, seed = 0): Uint8Array {
  const f = new Uint8Array(len);
  f.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00].slice(0, len));
  for (let i = 14; i < len; i++) f[i] = (i + seed) & 0xff;
  return f;
}

export async function ready(cfg: RigConfig = {}, queueSize?: number, memory?: GuestMemory): Promise<SoftVirtioNetDriver> {
  // The measured options on unless a test says otherwise, as these tests were written for them (the model's defaults are off).
  const d = new SoftVirtioNetDriver({ rxPrefetch: true, eagerInterrupts: true, ...cfg }, memory);
  const s = await d.init({ queueSize });
  if (s !== RUNNING) throw new Error(`status 0x${s.toString(16)} after init`);
  return d;
}

/**
 * Runs `corrupt` on a working driver and expects DEVICE_NEEDS_RESET (with a
 * configuration interrupt once DRIVER_OK was set), nothing on the wire, then a
 * working device after the driver resets it.
 */
export async function needsReset(t: ExecutionContext, corrupt: (d: SoftVirtioNetDriver) => Promise<unknown>, why: RegExp, configIrq = true, cfg: RigConfig = {}): Promise<void> {
  const d = await ready(cfg);
  d.irqs.length = 0;
  await corrupt(d);
  await d.dev.idle();
  t.true((d.dev.deviceStatus & DeviceStatus.NeedsReset) !== 0, 'NEEDS_RESET set');
  t.regex(d.dev.lastError ?? '', why);
  if (configIrq) t.true(d.irqs.includes(0), 'configuration interrupt');
  t.is(d.wire.sent.length, 0);
  t.is(await d.init(), RUNNING);
  const f = frame(100);
  await d.send(f);
  await d.dev.idle();
  t.deepEqual(d.wire.sent, [f]);
}
