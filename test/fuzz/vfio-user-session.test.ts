// Fuzzing a live vfio-user Session: well-framed messages with random and
// near-valid payloads, flags and fds, sent by a real client over the socket to
// the test device's server. Every case must end in a reply that echoes the
// request and is either a success of the right shape or an error with a
// known errno (never EIO, which stands for an unexpected exception) — or, for
// NO_REPLY and reply-type messages, in nothing at all. The session stays up,
// the device still answers, and another client of another server in the same
// process is never disturbed.
import test from 'ava';
import fc from 'fast-check';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../../native/index.ts';
import { TESTDEV_VENDOR_ID, TestReg } from '../../src/devices/testdev/testdev.ts';
import {
  Command, DEVICE_INFO_SIZE, DMA_MAP_SIZE, DMA_UNMAP_SIZE, Errno, HEADER_SIZE, IRQ_INFO_SIZE, IRQ_SET_SIZE, MsgFlag, PciRegion, REGION_INFO_SIZE,
  REGION_RW_SIZE, request,
} from '../../src/vfio-user/protocol.ts';
import type { Message } from '../../src/vfio-user/parser.ts';
import { VfioUserClient } from '../../src/vfio-user/client.ts';
import { fuzzParams, withTimeout } from '../support/fuzz.ts';
import { until } from '../support/until.ts';
import { rig } from '../vfio-user/helpers.ts';

const BAR0 = 0;
const FILE_SIZE = 0x10000;
/** A case that takes longer hangs; generous, because a loaded host (QEMU guests of other tests) can stall the loop for seconds. */
const CASE_TIMEOUT_MS = 30_000;
const KNOWN_ERRNOS = new Set<number>(Object.values(Errno).filter((e) => e !== Errno.EIO));

// ---- generators ---------------------------------------------------------------

type Field = [width: 1 | 2 | 4 | 8, value: number | bigint];

const u32 = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 4, 7, 8, 16, 20, 24, 32, 0x24, 0x21, 80, 0x1000, 0x7fffffff, 0xffffffff),
  fc.integer({ min: 0, max: 64 }),
  fc.integer({ min: 0, max: 0xffffffff }),
);
const u64 = fc.oneof(
  fc.constantFrom(0n, 4n, 0x1000n, 0x4000n, 0x10000n, 0x1000_0000n, 2n ** 53n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 0x20000n }),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
/** An argsz: usually the struct's own size, sometimes anything. */
const argsz = (size: number) => fc.oneof({ weight: 4, arbitrary: fc.constant(size) }, { weight: 1, arbitrary: u32 });
const small = (max: number) => fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max }) }, { weight: 1, arbitrary: u32 });
const bytes = (max: number) => fc.uint8Array({ maxLength: max });

function struct(fields: fc.Arbitrary<Field>[], tail: fc.Arbitrary<Uint8Array> = fc.constant(new Uint8Array(0))): fc.Arbitrary<Uint8Array> {
  return fc.tuple(fc.tuple(...fields), tail).map(([fs, rest]) => {
    const size = fs.reduce((n, [w]) => n + w, 0);
    const out = new Uint8Array(size + rest.length);
    const v = new DataView(out.buffer);
    let at = 0;
    for (const [w, value] of fs) {
      if (w === 8) v.setBigUint64(at, BigInt(value), true);
      else if (w === 4) v.setUint32(at, Number(value) >>> 0, true);
      else if (w === 2) v.setUint16(at, Number(value) & 0xffff, true);
      else v.setUint8(at, Number(value) & 0xff);
      at += w;
    }
    out.set(rest, size);
    return out;
  });
}
const f = <W extends Field[0]>(w: W, a: fc.Arbitrary<number | bigint>): fc.Arbitrary<Field> => a.map((v): Field => [w, v]);

const regionAccess = (write: boolean) =>
  struct(
    [f(8, fc.oneof(fc.bigInt({ min: 0n, max: 0x4010n }), u64)), f(4, small(9)), f(4, fc.oneof(fc.constantFrom(1, 2, 4, 8), small(0x2000)))],
    write ? bytes(64) : fc.constant(new Uint8Array(0)),
  );

/** Payloads shaped like each command's struct, with fields near and far from valid. */
const payloadFor: Record<number, fc.Arbitrary<Uint8Array>> = {
  [Command.Version]: fc
    .tuple(
      fc.constantFrom(0, 1),
      fc.constantFrom(0, 1),
      fc.oneof(
        fc.json(),
        fc.string(),
        fc
          .record({ max_data_xfer_size: fc.oneof(fc.constantFrom(4096, 1 << 20, 4095, -1, 2 ** 60, 'x', null), fc.nat()), max_msg_fds: fc.jsonValue(), pgsizes: fc.jsonValue() }, { requiredKeys: [] })
          .map((caps) => JSON.stringify({ capabilities: caps })),
      ),
    )
    .map(([major, minor, text]) => {
      const t = new TextEncoder().encode(text);
      const out = new Uint8Array(4 + t.length + 1);
      new DataView(out.buffer).setUint16(0, major, true);
      new DataView(out.buffer).setUint16(2, minor, true);
      out.set(t, 4);
      return out;
    }),
  [Command.DmaMap]: struct([f(4, argsz(DMA_MAP_SIZE)), f(4, small(3)), f(8, fc.bigInt({ min: 0n, max: 0x12000n })), f(8, u64), f(8, fc.oneof(fc.bigInt({ min: 0n, max: 0x11000n }), u64))]),
  [Command.DmaUnmap]: struct([f(4, argsz(DMA_UNMAP_SIZE)), f(4, small(3)), f(8, u64), f(8, u64)]),
  [Command.DeviceGetInfo]: struct([f(4, argsz(DEVICE_INFO_SIZE)), f(4, u32), f(4, u32), f(4, u32)]),
  [Command.GetRegionInfo]: struct([f(4, fc.oneof(argsz(REGION_INFO_SIZE), fc.constant(80))), f(4, u32), f(4, small(10)), f(4, u32), f(8, u64), f(8, u64)]),
  [Command.GetIrqInfo]: struct([f(4, argsz(IRQ_INFO_SIZE)), f(4, u32), f(4, small(6)), f(4, u32)]),
  [Command.SetIrqs]: struct(
    [f(4, argsz(IRQ_SET_SIZE)), f(4, fc.oneof(fc.constantFrom(0x21, 0x24, 0x22, 0x09, 0x11, 0x0a, 0x12, 0x29), u32)), f(4, small(5)), f(4, small(4)), f(4, small(4))],
    bytes(8),
  ),
  [Command.RegionRead]: regionAccess(false),
  [Command.RegionWrite]: regionAccess(true),
  [Command.DeviceReset]: bytes(4),
};

type FdKind = 'eventfd' | 'memfd' | 'sealed-memfd' | 'socket' | 'file';

interface Case {
  id: number;
  command: number;
  flags: number;
  payload: Uint8Array;
  fds: FdKind[];
}

const command = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...Object.keys(payloadFor).map(Number)) },
  { weight: 1, arbitrary: fc.constantFrom(Command.GetRegionIoFds, Command.DmaRead, Command.DmaWrite, Command.DirtyPages, Command.RegionWriteMulti) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
const flags = fc.oneof(
  { weight: 8, arbitrary: fc.constant(0) },
  { weight: 2, arbitrary: fc.constant(MsgFlag.NoReply) },
  { weight: 1, arbitrary: fc.constantFrom(MsgFlag.Reply, MsgFlag.Error, 2, 0xf, MsgFlag.Reply | MsgFlag.NoReply) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);
/** A payload made for the command, or for another one, cut short, extended or with bytes flipped. */
function payload(cmd: number): fc.Arbitrary<Uint8Array> {
  const own = payloadFor[cmd] ?? bytes(48);
  const any = fc.oneof(...Object.values(payloadFor));
  return fc.oneof(
    { weight: 6, arbitrary: own },
    { weight: 1, arbitrary: any },
    { weight: 1, arbitrary: bytes(64) },
    { weight: 1, arbitrary: fc.tuple(own, fc.nat(40)).map(([p, n]) => p.subarray(0, n)) },
    { weight: 1, arbitrary: fc.tuple(own, bytes(16)).map(([p, extra]) => Uint8Array.from([...p, ...extra])) },
    { weight: 1, arbitrary: fc.tuple(own, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([p, at, x]) => {
      const out = p.slice();
      if (out.length) out[at % out.length]! ^= x;
      return out;
    }) },
  );
}
const fdKinds = fc.oneof(
  { weight: 6, arbitrary: fc.constant([] as FdKind[]) },
  { weight: 2, arbitrary: fc.array(fc.constantFrom<FdKind>('eventfd', 'memfd', 'sealed-memfd', 'socket', 'file'), { minLength: 1, maxLength: 4 }) },
);
const fuzzCase: fc.Arbitrary<Case> = command.chain((cmd) =>
  fc.record({ id: fc.integer({ min: 0, max: 0xffff }), command: fc.constant(cmd), flags, payload: payload(cmd), fds: fdKinds }),
);

// ---- the live session -----------------------------------------------------------

/** Opens the fds a case sends (a socketpair's second end only to close it after). */
function fdMaker(filePath: string): (kind: FdKind) => number[] {
  closeSync(openSync(filePath, 'w'));
  return (kind) => {
    switch (kind) {
      case 'eventfd':
        return [native.eventfd()];
      case 'memfd':
        return [native.memfdCreate('fuzz', FILE_SIZE)];
      case 'sealed-memfd':
        return [native.sealedMemfd('fuzz', FILE_SIZE)];
      case 'socket':
        return native.socketpair('stream');
      case 'file':
        return [openSync(filePath, 'r+')];
    }
  };
}

/** The message a case describes, with the whole flags word as generated. */
function encodeCase(k: Case): Uint8Array {
  const msg = request(k.id, k.command, k.payload.length, (_, body) => body.set(k.payload));
  new DataView(msg.buffer).setUint32(8, k.flags, true);
  return msg;
}

function expectsReply(k: Case): boolean {
  return (k.flags & MsgFlag.TypeMask) !== MsgFlag.Reply && !(k.flags & MsgFlag.NoReply);
}

/** Runs `check` on each case, logging the case that fails. */
function property(t: import('ava').ExecutionContext, cases: fc.Arbitrary<Case>, check: (k: Case) => Promise<void>): fc.IAsyncProperty<[Case]> {
  return fc.asyncProperty(cases, async (k) => {
    try {
      await check(k);
    } catch (err) {
      t.log(`case ${JSON.stringify({ ...k, payload: [...k.payload] })}: ${(err as Error).message}`);
      throw err;
    }
  });
}

/** Checks a reply to `c`; returns what is wrong with it, if anything. */
function replyProblem(c: Case, m: Message): string | undefined {
  const h = m.header;
  if (h.id !== c.id || h.command !== c.command) return `reply id ${h.id} command ${h.command} does not echo the request`;
  if ((h.flags & MsgFlag.TypeMask) !== MsgFlag.Reply) return `reply has type ${h.flags & MsgFlag.TypeMask}`;
  if (h.flags & MsgFlag.Error) return KNOWN_ERRNOS.has(h.error) ? undefined : `error reply with errno ${h.error}`;
  if (h.error !== 0) return `success reply carries errno ${h.error}`;
  if (c.command === Command.RegionRead) {
    const count = new DataView(c.payload.buffer, c.payload.byteOffset).getUint32(12, true);
    if (m.payload.length !== REGION_RW_SIZE + count) return `REGION_READ of ${count} bytes answered with ${m.payload.length - REGION_RW_SIZE}`;
  }
  if (c.command === Command.DeviceGetInfo && m.payload.length !== DEVICE_INFO_SIZE) return `DEVICE_GET_INFO reply of ${m.payload.length} bytes`;
  return undefined;
}

test('fuzz: vfio-user messages into a live Session end in a clear error or a correct reply; the session, the device and a neighbour live on', async (t) => {
  const a = rig(t, 'fuzzed');
  const b = rig(t, 'neighbour', a.dir);
  const neighbour = await b.client();
  await neighbour.write32(BAR0, TestReg.Scratch, 0x5eed);
  const c = await a.client();
  const makeFd = fdMaker(join(a.dir, 'ram.bin'));
  let cases = 0;
  let replies = 0;
  let errors = 0;
  /** Sends one case and checks how it ends; throws saying what went wrong. */
  const run = async (k: Case): Promise<void> => {
    cases++;
    const msg = encodeCase(k);
    const opened = k.fds.map(makeFd);
    const send = opened.map((fds) => fds[0]!);
    try {
      if (expectsReply(k)) {
        const m = await withTimeout(c.callRaw(k.id, msg, send), CASE_TIMEOUT_MS, `command ${k.command}`);
        const problem = replyProblem(k, m);
        if (problem) throw new Error(problem);
        replies++;
        if (m.header.flags & MsgFlag.Error) errors++;
      } else {
        c.sendRaw(msg, send);
      }
    } finally {
      for (const fd of opened.flat()) native.close(fd);
    }
    // The session is alive and in order: the next command is answered, and nothing answered a NO_REPLY.
    const vendor = await withTimeout(c.regionRead(PciRegion.Config, 0, 2), CASE_TIMEOUT_MS, 'the probe read');
    if ((vendor[0]! | (vendor[1]! << 8)) !== TESTDEV_VENDOR_ID) throw new Error(`vendor id reads 0x${vendor[0]!.toString(16)}`);
    if (c.strayReplies.length) throw new Error(`unexpected reply: ${JSON.stringify(c.strayReplies[0]!.header)}`);
    if (cases % 64 === 0 && (await neighbour.read32(BAR0, TestReg.Scratch)) !== 0x5eed) throw new Error('the neighbour lost its scratch value');
  };
  await fc.assert(property(t, fuzzCase, run), fuzzParams(t, 2000));
  t.true(c.isOpen, 'the fuzzed session is still up');
  t.is(await neighbour.read32(BAR0, TestReg.Scratch), 0x5eed);
  const unexpected = [...a.logs, ...b.logs].filter((l) => /device error|uncaught|TypeError|RangeError/.test(l));
  t.deepEqual(unexpected, [], 'every refusal is a protocol or DMA error, not an exception');
  t.false(b.logs.some((l) => !l.startsWith('info')), 'the neighbour logged nothing but info');
  t.log(`${cases} cases: ${replies} replies, ${errors} of them errors`);
  t.true(replies > cases / 3 && errors < replies, 'the cases reached the handlers, and some succeeded');
});

test('fuzz: the first message of a new connection: VERSION negotiates, anything else is refused or drops that client; the server keeps listening', async (t) => {
  const a = rig(t, 'fuzzed');
  const b = rig(t, 'neighbour', a.dir);
  const neighbour = await b.client();
  await neighbour.write32(BAR0, TestReg.Scratch, 0x5eed);
  const makeFd = fdMaker(join(a.dir, 'ram.bin'));
  const first = fc.oneof(
    { weight: 3, arbitrary: fc.record({ id: fc.integer({ min: 0, max: 0xffff }), command: fc.constant(Command.Version as number), flags, payload: payload(Command.Version), fds: fdKinds }) },
    { weight: 1, arbitrary: fuzzCase },
  );
  let negotiated = 0;
  let dropped = 0;
  const run = async (k: Case): Promise<void> => {
    const accepted = once(a.server, 'connect');
    const c = new VfioUserClient(a.server.path);
    await withTimeout(accepted, CASE_TIMEOUT_MS, 'the server to accept the connection');
    const opened = k.fds.map(makeFd);
    try {
      const msg = encodeCase(k);
      const send = opened.map((fds) => fds[0]!);
      let m: Message | undefined;
      if (expectsReply(k)) m = await withTimeout(c.callRaw(k.id, msg, send), CASE_TIMEOUT_MS, `first command ${k.command}`).catch(() => undefined);
      else c.sendRaw(msg, send);
      if (m) {
        const problem = replyProblem(k, m);
        if (problem) throw new Error(problem);
      }
      const ok = m !== undefined && !(m.header.flags & MsgFlag.Error);
      if (ok && k.command !== Command.Version) throw new Error('a command before VERSION succeeded');
      if (ok) {
        negotiated++;
        const vendor = await withTimeout(c.regionRead(PciRegion.Config, 0, 2), CASE_TIMEOUT_MS, 'a read after VERSION');
        if ((vendor[0]! | (vendor[1]! << 8)) !== TESTDEV_VENDOR_ID) throw new Error('the negotiated session reads a wrong vendor id');
      } else if (!c.isOpen) {
        dropped++;
      }
      if (c.strayReplies.length) throw new Error(`unexpected reply: ${JSON.stringify(c.strayReplies[0]!.header)}`);
    } finally {
      for (const fd of opened.flat()) native.close(fd);
      const gone = a.server.hasClient ? once(a.server, 'disconnect') : Promise.resolve();
      c.close();
      await withTimeout<unknown>(gone, CASE_TIMEOUT_MS, 'the server to notice the client left'); // it serves one client at a time
    }
  };
  await fc.assert(property(t, first, run), fuzzParams(t, 1000));
  await until(() => !a.server.hasClient, 'the last client to be gone');
  const good = await a.client();
  t.is((await good.regionRead(PciRegion.Config, 0, 2))[0], TESTDEV_VENDOR_ID & 0xff, 'the server still negotiates with a well-behaved client');
  t.is(await neighbour.read32(BAR0, TestReg.Scratch), 0x5eed);
  t.deepEqual(a.logs.filter((l) => /device error|TypeError|RangeError/.test(l)), []);
  t.log(`${negotiated} negotiated, ${dropped} dropped`);
  t.true(negotiated > 0 && dropped > 0, 'both outcomes were reached');
});
