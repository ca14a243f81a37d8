// A transmitted packet in several buffers is read with the transport's scatter read where it has
// one (DmaPort.dmaReadInto: over PCIeOE every buffer's MRds at once, each completion's data in
// place, one promise), not buffer by buffer into arrays then copied together. The frame must
// leave whole and in order, the buffer read into serves later packets without changing a frame
// already sent, and a failed scatter read must set DEVICE_NEEDS_RESET with nothing sent.
import test from 'ava';
import { GuestMemory } from '../../src/devices/nvme/soft-host.ts';
import { DeviceStatus } from '../../src/devices/virtio-net/virtio-pci.ts';
import { frame, ready } from './virtio-net-rig.ts';

/** Guest memory that reads scatter lists too, recording each call's segments; failing them while `fail` is set. */
class ScatterMemory extends GuestMemory {
  readonly calls: { addr: number; len: number }[][] = [];
  readonly buffers: Uint8Array[] = [];
  fail = false;

  async dmaReadInto(segments: readonly { addr: number; len: number }[], into: Uint8Array): Promise<void> {
    this.calls.push(segments.map((s) => ({ ...s })));
    this.buffers.push(into);
    if (this.fail) throw new Error('completion timeout');
    let at = 0;
    for (const s of segments) {
      into.set(this.bytes.subarray(s.addr, s.addr + s.len), at);
      at += s.len;
    }
  }
}

for (const packed of [false, true]) {
  const ring = packed ? 'packed' : 'split';
  test(`${ring} ring: a packet in two buffers is one scatter read of both, and leaves whole`, async (t) => {
    const mem = new ScatterMemory(4 << 20);
    const d = await ready({ packed }, undefined, mem);
    const f = frame(1400, 3);
    await d.send(f, 40);
    await d.dev.idle();
    t.deepEqual(d.wire.sent, [f]);
    t.is(mem.calls.length, 1);
    t.deepEqual(mem.calls[0]!.map((s) => s.len), [40, 12 + 1400 - 40]);
    t.is(mem.calls[0]![1]!.addr, mem.calls[0]![0]!.addr + 40);
  });

  test(`${ring} ring: the buffer a packet was read into serves the next packets, and a frame sent keeps its bytes`, async (t) => {
    const mem = new ScatterMemory(4 << 20);
    const d = await ready({ packed }, undefined, mem);
    // The frames as the device handed them to the wire (MemoryWire keeps copies): a real wire may send them later.
    const handed: Uint8Array[] = [];
    d.wire.transmit = (f) => handed.push(f);
    const sent = [frame(1400, 1), frame(1400, 2), frame(900, 3)];
    for (const f of sent) {
      await d.send(f, 30);
      await d.dev.idle();
    }
    t.deepEqual(handed.map((f) => f.slice()), sent, 'each frame as it was sent, after later packets were read');
    t.is(mem.calls.length, 3);
    t.true(mem.buffers.every((b) => b.buffer === mem.buffers[0]!.buffer), 'one buffer read into for all three');
  });

  test(`${ring} ring: a failed scatter read sets DEVICE_NEEDS_RESET and sends nothing`, async (t) => {
    const mem = new ScatterMemory(4 << 20);
    const d = await ready({ packed }, undefined, mem);
    mem.fail = true;
    await d.send(frame(600), 100);
    await d.dev.idle();
    t.true((d.dev.deviceStatus & DeviceStatus.NeedsReset) !== 0);
    t.is(d.wire.sent.length, 0);
  });
}
