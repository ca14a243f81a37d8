import test from 'ava';
import { MsiCap, MsiControl, MsixCap, Pcie, Pm } from '../../src/pci/capabilities.ts';
import { CapId, Cfg, CommandBit, ConfigSpace, StatusBit } from '../../src/pci/config-space.ts';
import { BusMasterError, PciFunction, type FunctionPorts } from '../../src/pci/function.ts';
import { TestDevice, TestReg, TestStatus } from '../../src/devices/testdev/testdev.ts';

const le32 = (v: number) => new Uint8Array([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff]);
const le64 = (v: number) => new Uint8Array([...le32(v >>> 0), ...le32(Math.floor(v / 2 ** 32))]);
const r32 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getUint32(0, true);

function fn(extra: Partial<ConstructorParameters<typeof PciFunction>[0]> = {}): PciFunction {
  return new PciFunction({
    vendorId: 0x1234,
    deviceId: 0x5678,
    classCode: 0x010802,
    interruptPin: 1,
    bars: [{ size: 0x4000, kind: 'mem64' }, undefined, { size: 0x100, kind: 'io' }, { size: 0x1000, kind: 'mem32', prefetchable: true }],
    msix: { vectors: 8, bar: 0, tableOffset: 0x2000, pbaOffset: 0x3000 },
    ...extra,
  });
}

/** Records what the transport would see. */
function ports(mem = new Uint8Array(0x10000)): FunctionPorts & { msix: number[]; msi: number[]; intx: boolean[]; mem: Uint8Array } {
  const msix: number[] = [];
  const msi: number[] = [];
  const intx: boolean[] = [];
  return {
    msix,
    msi,
    intx,
    mem,
    dma: {
      dmaRead: async (a, n) => {
        if (a + n > mem.length) throw new Error('unmapped');
        return mem.slice(a, a + n);
      },
      dmaWrite: async (a, d) => {
        if (a + d.length > mem.length) throw new Error('unmapped');
        mem.set(d, a);
      },
    },
    irq: { msix: (v) => msix.push(v), msi: (v) => msi.push(v), intx: (l) => intx.push(l) },
  };
}

test('config space: read-only, writable and write-1-to-clear bits', (t) => {
  const cs = new ConfigSpace(256);
  cs.set16(Cfg.VendorId, 0xabcd);
  cs.set16(Cfg.Status, 0x0010 | 0x8000);
  cs.seal();
  cs.write(Cfg.VendorId, new Uint8Array([0, 0]));
  t.is(cs.get16(Cfg.VendorId), 0xabcd);
  cs.write(Cfg.Command, new Uint8Array([0xff, 0xff]));
  t.is(cs.get16(Cfg.Command), 0x0547, 'only IO, MEM, BME, parity, SERR, INTx-disable are writable');
  cs.write(Cfg.Status, new Uint8Array([0xff, 0x7f])); // 1s everywhere except bit 15
  t.is(cs.get16(Cfg.Status), 0x8010, 'bit 15 survives (0 written); capability bit is read-only');
  cs.write(Cfg.Status, new Uint8Array([0x00, 0x80]));
  t.is(cs.get16(Cfg.Status), 0x0010, 'writing 1 clears a W1C bit');
  cs.reset();
  t.is(cs.get16(Cfg.Command), 0);
  t.is(cs.get16(Cfg.Status), 0x8010);
});

test('header and BAR sizing for 64-bit, I/O and prefetchable 32-bit BARs', (t) => {
  const f = fn();
  t.is(f.config.size, 4096);
  t.is(r32(f.configRead(Cfg.Revision, 4)) >>> 8, 0x010802);
  t.is(f.config.get16(Cfg.SubsystemVendorId), 0x1234);
  const size = (bar: number) => {
    f.configWrite(Cfg.Bar0 + 4 * bar, le32(0xffffffff));
    return r32(f.configRead(Cfg.Bar0 + 4 * bar, 4));
  };
  t.is(size(0), 0xffffc004);
  t.is(size(1), 0xffffffff, 'upper half of the 64-bit BAR');
  t.is(size(2), 0xffffff01);
  t.is(size(3), 0xfffff008);
  t.is(size(4), 0, 'unimplemented BAR');
  f.configWrite(Cfg.Bar0, le32(0xfebf0000));
  t.is(r32(f.configRead(Cfg.Bar0, 4)), 0xfebf0004);
  t.throws(() => fn({ bars: [{ size: 3000, kind: 'mem32' }] }), { message: /power of two/ });
  t.throws(() => fn({ bars: [{ size: 0x1000, kind: 'mem64' }, { size: 0x1000, kind: 'mem32' }], msix: undefined }), { message: /BAR 1 must be free/ });
  t.throws(() => fn({ classCode: 0 }), { message: /class code 0/ });
});

test('capabilities: PM, PCI Express endpoint, MSI-X, in a walkable list', (t) => {
  const f = fn();
  const cs = f.config;
  t.true((cs.get16(Cfg.Status) & StatusBit.CapabilitiesList) !== 0);
  const pm = cs.findCapability(CapId.PowerManagement)!;
  const pcie = cs.findCapability(CapId.PciExpress)!;
  const msix = cs.findCapability(CapId.MsiX)!;
  t.deepEqual([pm, pcie, msix], [f.caps.pm, f.caps.pcie, f.caps.msix]);
  t.is(cs.get16(pcie + Pcie.Caps) & 0xf0, 0, 'device/port type = PCI Express Endpoint');
  t.is(cs.get16(pcie + Pcie.Caps) & 0xf, 2, 'capability version 2');
  t.is(cs.get16(msix + MsixCap.Control) & 0x7ff, 7, 'table size - 1');
  t.is(cs.get32(msix + MsixCap.Table), 0x2000);
  t.is(cs.get32(msix + MsixCap.Pba), 0x3000);
  // PM: power state writable, the rest not.
  f.configWrite(pm + Pm.Pmcsr, new Uint8Array([0xff, 0xff]));
  t.is(cs.get16(pm + Pm.Pmcsr), 0x000b);
  // A conventional function has 256 bytes and no PCIe/PM capability.
  const conv = fn({ express: false });
  t.is(conv.config.size, 256);
  t.is(conv.config.findCapability(CapId.PciExpress), undefined);
  t.is(conv.config.findCapability(CapId.MsiX), 0x40);
});

test('MSI-X table and PBA live in the BAR; vectors start masked', (t) => {
  const f = fn();
  t.is(r32(f.barRead(0, 0x2000 + 12, 4) as Uint8Array), 1, 'vector 0 masked');
  f.barWrite(0, 0x2000 + 16, le32(0xfee00000));
  t.is(r32(f.barRead(0, 0x2000 + 16, 4) as Uint8Array), 0xfee00000);
  f.barWrite(0, 0x3000, le32(0xff));
  t.is(r32(f.barRead(0, 0x3000, 4) as Uint8Array), 0, 'PBA is read-only');
  f.reset();
  t.is(r32(f.barRead(0, 0x2000 + 16, 4) as Uint8Array), 0);
});

test('interrupts: MSI-X when enabled, else INTx gated by Command.INTx_Disable; function mask sets PBA', (t) => {
  class Dev extends PciFunction {
    fire(v: number) {
      return this.interrupt(v);
    }
    lower() {
      this.setIntx(false);
    }
  }
  const f = new Dev({ vendorId: 1, deviceId: 2, classCode: 0x088000, interruptPin: 1, bars: [{ size: 0x4000, kind: 'mem32' }], msix: { vectors: 2, bar: 0, tableOffset: 0, pbaOffset: 0x1000 } });
  const p = ports();
  f.attach(p);
  t.is(f.fire(0), 'intx');
  t.deepEqual(p.intx, [true]);
  t.true((f.config.get16(Cfg.Status) & StatusBit.InterruptStatus) !== 0);
  f.configWrite(Cfg.Command, new Uint8Array([0, CommandBit.IntxDisable >> 8]));
  t.deepEqual(p.intx, [true, false], 'INTx disable deasserts the line');
  t.true((f.config.get16(Cfg.Status) & StatusBit.InterruptStatus) !== 0, 'status still shows the source');
  f.lower();
  f.setMsixEnabled(true);
  t.is(f.fire(1), 'none', 'MSI-X is a memory write: not without Bus Master Enable');
  t.deepEqual(p.msix, []);
  f.configWrite(Cfg.Command, new Uint8Array([CommandBit.BusMaster, CommandBit.IntxDisable >> 8]));
  t.is(f.fire(1), 'msix');
  t.deepEqual(p.msix, [1]);
  f.configWrite(f.caps.msix! + MsixCap.Control + 1, new Uint8Array([0xc0])); // enable + function mask
  t.is(f.fire(1), 'none');
  t.is(r32(f.barRead(0, 0x1000, 4) as Uint8Array), 2, 'vector 1 pending');
});

test('DMA needs Bus Master Enable; FLR resets the function', async (t) => {
  class Dev extends PciFunction {
    rd(a: number, n: number) {
      return this.dmaRead(a, n);
    }
  }
  const f = new Dev({ vendorId: 1, deviceId: 2, classCode: 0x088000, bars: [] });
  t.throws(() => f.rd(0, 4), { instanceOf: BusMasterError, message: /no transport/ });
  f.attach(ports());
  t.throws(() => f.rd(0, 4), { instanceOf: BusMasterError, message: /Bus Master Enable/ });
  f.configWrite(Cfg.Command, new Uint8Array([CommandBit.BusMaster]));
  t.is((await f.rd(0, 4)).length, 4);
  const devctl = f.caps.pcie! + Pcie.DevCtl;
  t.true((f.config.get32(f.caps.pcie! + Pcie.DevCap) & (1 << 28)) !== 0, 'FLR advertised');
  f.configWrite(devctl, new Uint8Array([0x10, 0x80])); // Initiate FLR
  t.is(f.config.get16(Cfg.Command), 0, 'FLR reset the Command register');
  t.is(f.config.get16(devctl) & 0x8000, 0, 'Initiate FLR reads as 0');
});

test('test device: scratch, DMA copy engine, completion interrupt, errors, reset', async (t) => {
  const d = new TestDevice();
  const p = ports();
  d.attach(p);
  d.configWrite(Cfg.Command, new Uint8Array([CommandBit.Memory | CommandBit.BusMaster]));
  d.setMsixEnabled(true);
  d.barWrite(0, TestReg.Scratch + 4, le32(0xcafe));
  t.is(r32(d.barRead(0, TestReg.Scratch + 4, 4) as Uint8Array), 0xcafe);
  d.barWrite(0, TestReg.Id, le32(0));
  t.is(r32(d.barRead(0, TestReg.Id, 4) as Uint8Array), 0x7e570e0e, 'ID is read-only');

  p.mem.set([5, 6, 7, 8], 0x100);
  d.barWrite(0, TestReg.DmaSrc, le64(0x100));
  d.barWrite(0, TestReg.DmaDst, le64(0x900));
  d.barWrite(0, TestReg.DmaLen, le32(4));
  d.barWrite(0, TestReg.DmaVector, le32(2));
  d.barWrite(0, TestReg.Doorbell, le32(1));
  t.is(r32(d.barRead(0, TestReg.Status, 4) as Uint8Array), TestStatus.Busy);
  await d.idle;
  t.deepEqual([...p.mem.subarray(0x900, 0x904)], [5, 6, 7, 8]);
  t.is(r32(d.barRead(0, TestReg.Status, 4) as Uint8Array), TestStatus.Done);
  t.deepEqual(p.msix, [2]);

  d.barWrite(0, TestReg.DmaLen, le32(2 << 20));
  d.barWrite(0, TestReg.Doorbell, le32(1));
  await d.idle;
  t.is(r32(d.barRead(0, TestReg.Status, 4) as Uint8Array), TestStatus.Error);
  t.regex(d.lastError!.message, /exceeds/);
  d.barWrite(0, TestReg.Status, le32(TestStatus.Error));
  t.is(r32(d.barRead(0, TestReg.Status, 4) as Uint8Array), 0);
  t.is(r32(d.barRead(0, TestReg.DmaCount, 4) as Uint8Array), 1);

  // A reset while a copy is in flight: the old copy must not report into the new state.
  d.barWrite(0, TestReg.DmaLen, le32(4));
  d.barWrite(0, TestReg.Doorbell, le32(1));
  d.reset();
  await d.idle;
  t.is(r32(d.barRead(0, TestReg.Status, 4) as Uint8Array), 0);
  t.is(r32(d.barRead(0, TestReg.DmaCount, 4) as Uint8Array), 0);
  t.is(r32(d.barRead(0, TestReg.Scratch + 4, 4) as Uint8Array), 0);
});

/** A function whose interrupts the test raises directly. */
class IrqDev extends PciFunction {
  fire(v: number) {
    return this.interrupt(v);
  }
  lower() {
    this.setIntx(false);
  }
}

function msiDev(perVectorMask = true, vectors = 4): IrqDev {
  return new IrqDev({
    vendorId: 1, deviceId: 2, classCode: 0x088000, interruptPin: 1, bars: [{ size: 0x4000, kind: 'mem32' }],
    msix: { vectors: 2, bar: 0, tableOffset: 0, pbaOffset: 0x1000 },
    msi: { vectors, perVectorMask },
  });
}

const le16 = (v: number) => new Uint8Array([v & 0xff, (v >>> 8) & 0xff]);

test('MSI capability: 64-bit, multiple message capable, per-vector mask; which bits software may write', (t) => {
  const f = msiDev();
  const cs = f.config;
  const at = cs.findCapability(CapId.Msi)!;
  t.is(f.caps.msi, at);
  t.is(cs.get8(at + 1), 0, 'last in the list');
  t.is(cs.get16(at + MsiCap.Control), (2 << MsiControl.MmcShift) | MsiControl.Address64 | MsiControl.PerVectorMask, 'MMC = 4 vectors, 64-bit, PVM, disabled');
  f.configWrite(at + MsiCap.Control, le16(0xffff));
  t.is(cs.get16(at + MsiCap.Control), 0x0185 | MsiControl.MmeMask, 'only Enable and MME are writable');
  f.configWrite(at + MsiCap.AddressLo, le32(0xffffffff));
  t.is(cs.get32(at + MsiCap.AddressLo), 0xfffffffc, 'address is dword-aligned');
  f.configWrite(at + MsiCap.MaskBits, le32(0xffffffff));
  t.is(cs.get32(at + MsiCap.MaskBits), 0xf, 'a mask bit per requested vector');
  f.configWrite(at + MsiCap.PendingBits, le32(0xffffffff));
  t.is(cs.get32(at + MsiCap.PendingBits), 0, 'pending bits are the function\'s');
  f.reset();
  t.is(cs.get16(at + MsiCap.Control) & (MsiControl.Enable | MsiControl.MmeMask), 0);
  t.is(cs.get32(at + MsiCap.MaskBits), 0);
  // Without per-vector masking the capability is 14 bytes; a bad vector count is refused.
  const plain = msiDev(false, 1);
  t.is(plain.config.get16(plain.caps.msi! + MsiCap.Control), MsiControl.Address64);
  t.throws(() => msiDev(true, 3), { message: /power of two/ });
  t.throws(() => msiDev(true, 64), { message: /power of two/ });
});

test('MSI: routing, vectors folded onto the allocated ones, message for memory-write transports, INTx off while enabled', (t) => {
  const f = msiDev();
  const at = f.caps.msi!;
  const p = ports();
  f.attach(p);
  t.is(f.fire(0), 'intx', 'MSI disabled: INTx');
  t.deepEqual(p.intx, [true]);
  f.configWrite(Cfg.Command, new Uint8Array([CommandBit.Memory]));
  f.configWrite(at + MsiCap.AddressLo, le32(0xfee01000));
  f.configWrite(at + MsiCap.AddressHi, le32(0x1));
  f.configWrite(at + MsiCap.Data, le16(0x4021));
  f.configWrite(at + MsiCap.Control, le16(MsiControl.Enable));
  t.true(f.msiEnabled);
  t.deepEqual(p.intx, [true, false], 'enabling MSI deasserts INTx');
  t.false(f.intxAsserted);
  t.is(f.fire(0), 'none', 'no MSI without Bus Master Enable');
  f.configWrite(Cfg.Command, new Uint8Array([CommandBit.Memory | CommandBit.BusMaster]));
  t.is(f.msiVectors, 1);
  t.is(f.fire(3), 'msi');
  t.deepEqual(p.msi, [0], 'one vector allocated: every vector is message 0');
  f.configWrite(at + MsiCap.Control, le16(MsiControl.Enable | (1 << MsiControl.MmeShift)));
  t.is(f.msiVectors, 2);
  f.fire(3);
  t.deepEqual(p.msi, [0, 1]);
  t.deepEqual(f.msiMessage(1), { address: 0x1fee01000n, data: 0x4021, masked: false }, 'vector 1 in the data bit MME frees');
  t.deepEqual(f.msiMessage(0), { address: 0x1fee01000n, data: 0x4020, masked: false });
  t.is(f.msiMessage(2), undefined, 'beyond the allocated vectors');
  f.configWrite(at + MsiCap.Control, le16(MsiControl.Enable | MsiControl.MmeMask));
  t.is(f.msiVectors, 4, 'MME beyond MMC is capped');
  // MSI-X wins when both are enabled; a transport without an MSI port drops MSI.
  f.setMsixEnabled(true);
  t.is(f.fire(0), 'msix');
  f.setMsixEnabled(false);
  const { msi: _, ...noMsi } = p.irq;
  f.attach({ dma: p.dma, irq: noMsi });
  t.is(f.fire(0), 'none');
  t.deepEqual(p.msi, [0, 1]);
  f.setMsiEnabled(false);
  t.is(f.fire(0), 'intx');
});

test('MSI per-vector mask holds a message as pending and sends it when the mask clears', (t) => {
  const f = msiDev();
  const at = f.caps.msi!;
  const p = ports();
  f.attach(p);
  f.configWrite(Cfg.Command, new Uint8Array([CommandBit.BusMaster]));
  f.configWrite(at + MsiCap.Control, le16(MsiControl.Enable | (2 << MsiControl.MmeShift)));
  f.configWrite(at + MsiCap.MaskBits, le32(0b0110));
  t.is(f.fire(1), 'none');
  t.is(f.fire(2), 'none');
  t.is(f.fire(2), 'none', 'a second message while masked is the same pending bit');
  t.is(f.fire(3), 'msi');
  t.deepEqual(p.msi, [3]);
  t.is(f.config.get32(at + MsiCap.PendingBits), 0b0110);
  t.is(f.msiMessage(1)?.masked, true);
  f.configWrite(at + MsiCap.MaskBits, le32(0b0100)); // unmask vector 1 only
  t.deepEqual(p.msi, [3, 1]);
  t.is(f.config.get32(at + MsiCap.PendingBits), 0b0100);
  f.configWrite(at + MsiCap.MaskBits, le32(0));
  t.deepEqual(p.msi, [3, 1, 2], 'each pending message is sent once');
  t.is(f.config.get32(at + MsiCap.PendingBits), 0);
  f.configWrite(at + MsiCap.MaskBits, le32(0));
  t.deepEqual(p.msi, [3, 1, 2], 'nothing more pending');
  // A host that emulates the capability (QEMU over vfio-user) masks for itself: every message goes out.
  f.attach({ ...p, irq: { ...p.irq, hostMasksMsi: true } });
  f.configWrite(at + MsiCap.MaskBits, le32(0b0001));
  t.is(f.fire(0), 'msi');
  t.deepEqual(p.msi, [3, 1, 2, 0]);
  t.is(f.config.get32(at + MsiCap.PendingBits), 0);
});

test('MSI-X: clearing Function Mask sends the vectors pending in the PBA', (t) => {
  const f = msiDev();
  const p = ports();
  f.attach(p);
  f.configWrite(Cfg.Command, new Uint8Array([CommandBit.BusMaster]));
  f.setMsixEnabled(true);
  const ctl = f.caps.msix! + MsixCap.Control + 1;
  f.configWrite(ctl, new Uint8Array([0xc0])); // enable + function mask
  t.is(f.fire(1), 'none');
  t.is(r32(f.barRead(0, 0x1000, 4) as Uint8Array), 2);
  f.configWrite(ctl, new Uint8Array([0x80]));
  t.deepEqual(p.msix, [1]);
  t.is(r32(f.barRead(0, 0x1000, 4) as Uint8Array), 0, 'PBA bit cleared');
  f.configWrite(ctl, new Uint8Array([0x80]));
  t.deepEqual(p.msix, [1]);
});
