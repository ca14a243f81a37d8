// Fuzzing a live control socket (the switch's, served by serveLineControl):
// JSON lines near and far from valid requests, and lines that are not JSON.
// Every non-blank line gets exactly one reply line, in order: {"ok":false,
// "error":"..."} naming the problem, or {"ok":true,...} only for a request the
// schema accepts, with the change it asked for in effect. The switch keeps
// serving a second control client throughout.
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SwitchControl, type ControlReply } from '../../src/fabric/switch/control.ts';
import { ControlRequest, parseSwitchArgs, runSwitch } from '../../src/fabric/switch/main.ts';
import { fuzzParams, withTimeout } from '../support/fuzz.ts';
import { PROFILE_NAME } from '../../src/common/control-socket.ts';

const FAULT_KEYS = ['loss', 'duplicate', 'reorder', 'reorderDelay', 'corrupt', 'latency', 'jitter', 'rateGbps', 'down'] as const;

function requests(root: string): fc.Arbitrary<unknown> {
  const port = fc.oneof({ weight: 5, arbitrary: fc.constantFrom('a', 'b') }, { weight: 1, arbitrary: fc.constantFrom('nope', '', 'control') }, { weight: 1, arbitrary: fc.string() });
  const number = fc.oneof(
    fc.double({ min: 0, max: 1, noNaN: true }),
    fc.constantFrom(0, 0.001, 0.5, 1, 1.5, 60_000, 60_001, 1000, 1e-9, -1, Number.MAX_VALUE),
    fc.double(),
    fc.integer(),
  );
  const value = fc.oneof({ weight: 6, arbitrary: number }, { weight: 1, arbitrary: fc.boolean() }, { weight: 1, arbitrary: fc.jsonValue() });
  const faults = fc.dictionary(fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...FAULT_KEYS) }, { weight: 1, arbitrary: fc.string() }), value, { maxKeys: 4 });
  const path = fc.oneof(
    fc.constantFrom(null, '/etc/passwd', `${root}/sw/a.sock`, `${root}/sw/b.sock`, `${root}/hi/link0.sock`, `${root}/../x`, 'rel.sock', ''),
    fc.string().map((s) => `${root}/${s}`),
    fc.string(),
  );
  return fc.oneof(
    { weight: 4, arbitrary: fc.record({ port, dir: fc.constantFrom('tx', 'rx', 'both'), set: faults }, { requiredKeys: ['port', 'set'] }) },
    { weight: 2, arbitrary: fc.record({ port, peer: path }) },
    { weight: 1, arbitrary: fc.record({ counters: fc.oneof(fc.constant(true), fc.jsonValue()), port }, { requiredKeys: ['counters'] }) },
    { weight: 1, arbitrary: fc.record({ profile: fc.constantFrom('start', 'stop'), file: fc.string() }) },
    { weight: 2, arbitrary: fc.jsonValue() },
  );
}

/** A line: a request as JSON, or anything that is not (no newline inside: that would be two lines). */
function lines(root: string): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: requests(root).map((r) => JSON.stringify(r) ?? 'undefined') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary' }) },
    { weight: 1, arbitrary: requests(root).map((r) => (JSON.stringify(r) ?? '').slice(0, -1)) },
  ).map((l) => l.replace(/\n/g, ' '));
}

test('fuzz: control JSON lines into the live switch control socket: one clear reply per line, valid requests take effect, another client is served throughout', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'pcieoe-ctlfuzz-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const sw = await runSwitch(parseSwitchArgs(['--port', 'a', '--port', 'b'], { LAB_SOCKET_DIR: join(root, 'sw') }), () => {});
  t.teardown(() => sw.close());
  const control = join(root, 'sw', 'control.sock');
  const fuzzed = await SwitchControl.connect(control);
  const other = await SwitchControl.connect(control);
  t.teardown(() => {
    fuzzed.close();
    other.close();
  });

  let cases = 0;
  let accepted = 0;
  const run = async (line: string): Promise<void> => {
    cases++;
    if (line.trim() === '') return; // blank lines are skipped, without a reply
    const reply = (await withTimeout(fuzzed.requestLine(line), 5000, line)) as ControlReply & { config?: Record<'tx' | 'rx', Record<string, unknown>> };
    const text = JSON.stringify(reply);
    if (reply.ok === false) {
      if (typeof reply.error !== 'string' || reply.error === '') throw new Error(`error reply without a message: ${text}`);
    } else if (reply.ok === true) {
      accepted++;
      const sent = JSON.parse(line) as { profile?: unknown; file?: unknown };
      // CPU profiles are the shared profiler's (src/common/control-socket.ts), not the switch schema's.
      if ('profile' in sent) {
        if (sent.profile !== 'start' && !(sent.profile === 'stop' && typeof sent.file === 'string' && PROFILE_NAME.test(sent.file))) throw new Error(`accepted a profile request the profiler refuses: ${text}`);
      }
      const req = 'profile' in sent ? undefined : ControlRequest.safeParse(sent);
      if (req && !req.success) throw new Error(`accepted a request the schema refuses: ${text}`);
      const r = req?.data;
      if (r && 'set' in r) {
        // The change asked for is what the switch now has, in the directions asked for.
        for (const dir of r.dir ? [r.dir] : (['tx', 'rx'] as const)) {
          for (const [k, v] of Object.entries(r.set)) if (reply.config?.[dir]?.[k] !== v) throw new Error(`${dir}.${k} is ${reply.config?.[dir]?.[k]} after setting ${v}`);
        }
        sw.handle({ port: r.port, set: { loss: 0, duplicate: 0, reorder: 0, corrupt: 0, latency: 0, jitter: 0, rateGbps: 0, down: false } });
      }
    } else {
      throw new Error(`reply without a boolean "ok": ${text}`);
    }
    if (cases % 64 === 0) {
      const c = (await withTimeout(other.request({ counters: true }), 5000, 'counters')) as ControlReply & { ports?: Record<string, unknown> };
      if (!c.ok || !c.ports?.['a'] || !c.ports['b']) throw new Error('the other control client was not served');
    }
  };
  await fc.assert(
    fc.asyncProperty(lines(root), async (line) => {
      try {
        await run(line);
      } catch (err) {
        t.log(`line ${JSON.stringify(line).slice(0, 300)}: ${(err as Error).message}`);
        throw err;
      }
    }),
    fuzzParams(t, 1000),
  );
  t.like(await fuzzed.request({ counters: true, port: 'a' }), { ok: true }, 'the fuzzing connection is still served');
  t.like(await other.request({ counters: true, port: 'a' }), { ok: true });
  t.log(`${cases} lines, ${accepted} accepted`);
  t.true(accepted > 0 && accepted < cases);
});
