/**
 * The shipped Lua dissector against the codec: capture a lossy fabric run,
 * let tshark decode it with lab/wireshark/pcieoe.lua, and compare field by
 * field with what our own decoders say. Needs tshark (`lab setup` installs it).
 */

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import test from 'ava';
import { decodeFrame } from '../../src/fabric/wire/frame.ts';
import { PcapWriter, readPcap } from '../../src/fabric/wire/pcap.ts';
import { decodeTlp, encodeTlp, isCompletion, isConfigRequest, isMemRequest } from '../../src/fabric/tlp/tlp.ts';
import fc from 'fast-check';
import { anyTlp } from './arbitraries.ts';
import { buildFabric } from './harness.ts';


const FIELDS = [
  'vlan.id', 'pcieoe.type', 'pcieoe.flags', 'pcieoe.channel', 'pcieoe.seq', 'pcieoe.ack', 'pcieoe.credits', 'pcieoe.length', 'pcieoe.crc', 'pcieoe.epoch', 'pcieoe.peer_epoch',
  'pcieoe.tlp.fmt_type', 'pcieoe.tlp.tc', 'pcieoe.tlp.requester', 'pcieoe.tlp.tag', 'pcieoe.tlp.address', 'pcieoe.tlp.completer',
  'pcieoe.tlp.register', 'pcieoe.tlp.status', 'pcieoe.tlp.byte_count', 'pcieoe.tlp.lower_address',
];

// `npm test` runs `lab setup` first, which installs tshark.
test('tshark decodes a capture with the shipped dissector, field by field', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fabric-tshark-'));
  const file = path.join(dir, 'a0.pcap');
  const writer = new PcapWriter(file);
  const f = buildFabric({ seed: 9, capture: (side, link) => (side === 'a' && link === 0 ? writer : undefined) });
  f.portsA[0]!.set({ loss: 0.1 }, 'toSwitch'); // so NAKs and replays show up too
  const tlps = fc.sample(anyTlp(16), { numRuns: 60, seed: 4 });
  tlps.forEach((tlp, i) => f.clock.setTimer(1 + i * 0.02, () => (i % 2 ? f.b : f.a).send(encodeTlp(tlp))));
  t.true(f.clock.runUntil(() => f.gotA.length + f.gotB.length === tlps.length, 5000));
  f.clock.advance(5);
  f.close();
  writer.close();

  const out = execFileSync('tshark', ['-r', file, '-X', 'lua_script:lab/wireshark/pcieoe.lua', '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=f', ...FIELDS.flatMap((x) => ['-e', x])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const rows = out.trimEnd().split('\n').map((line) => line.split('\t'));
  const records = readPcap(fs.readFileSync(file));
  t.is(rows.length, records.length);
  const num = (s: string | undefined) => (s === undefined || s === '' ? undefined : s.startsWith('0x') ? BigInt(s) : BigInt(s));
  let tlpFrames = 0;
  records.forEach((rec, i) => {
    const r = decodeFrame(rec.data);
    if (!r.ok) return t.fail(`frame ${i}: ${r.error}`);
    const fr = r.value;
    const row = Object.fromEntries(FIELDS.map((name, k) => [name, num(rows[i]![k])]));
    const want: Record<string, bigint | undefined> = {
      'vlan.id': BigInt(fr.vlan!.vid),
      'pcieoe.type': BigInt(fr.type),
      'pcieoe.flags': BigInt(fr.flags),
      'pcieoe.channel': BigInt(fr.channel),
      'pcieoe.seq': BigInt(fr.seq),
      'pcieoe.ack': BigInt(fr.ack),
      'pcieoe.credits': BigInt(fr.credits),
      'pcieoe.length': BigInt(fr.payload.length),
      'pcieoe.crc': BigInt(rec.data.readUInt32BE(30)),
      'pcieoe.epoch': BigInt(fr.epoch),
      'pcieoe.peer_epoch': BigInt(fr.peerEpoch),
    };
    if (fr.payload.length > 0) {
      const d = decodeTlp(fr.payload);
      if (!d.ok) return t.fail(`frame ${i} TLP: ${d.error}`);
      const tlp = d.value;
      tlpFrames++;
      Object.assign(want, {
        'pcieoe.tlp.fmt_type': BigInt(fr.payload[0]!),
        'pcieoe.tlp.tc': BigInt(tlp.tc),
        'pcieoe.tlp.requester': BigInt(tlp.requesterId),
        'pcieoe.tlp.tag': BigInt(tlp.tag),
        'pcieoe.tlp.address': isMemRequest(tlp) ? tlp.address : undefined,
        'pcieoe.tlp.completer': isConfigRequest(tlp) || isCompletion(tlp) ? BigInt(tlp.completerId) : undefined,
        'pcieoe.tlp.register': isConfigRequest(tlp) ? BigInt(tlp.register) : undefined,
        'pcieoe.tlp.status': isCompletion(tlp) ? BigInt(tlp.status) : undefined,
        'pcieoe.tlp.byte_count': isCompletion(tlp) ? BigInt(tlp.byteCount) : undefined,
        'pcieoe.tlp.lower_address': isCompletion(tlp) ? BigInt(tlp.lowerAddress) : undefined,
      });
    }
    for (const name of FIELDS) {
      if (row[name] !== want[name]) t.fail(`frame ${i} ${name}: tshark ${row[name]}, codec ${want[name]}`);
    }
  });
  t.true(tlpFrames >= 30, `${tlpFrames} TLP frames captured`);
  fs.rmSync(dir, { recursive: true });
});
