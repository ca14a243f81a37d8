// Switch ports that are no HI, DI or manager link (here the Ethernet wires of a card's NIC
// functions, `nic-hotplug` topology, real processes without guests) are links too: listed,
// faulted and captured by their port name.
import test from 'ava';
import type { LinkView } from '../../src/manager/links.ts';
import { GuestlessLab } from './console-support.ts';

const lab = new GuestlessLab('nic-hotplug');
test.before(() => lab.start());
test.after.always(() => lab.stop());

test('a NIC function\'s wire is a link: lab links lists it, lab fault sets it down', async (t) => {
  const r = await lab.lab(['links', '--json']);
  t.is(r.code, 0, r.stderr);
  const wires = (JSON.parse(r.stdout) as LinkView[]).filter((l) => l.kind === 'wire');
  t.deepEqual(wires.map((w) => w.port), ['di-nic0', 'di-nic1']);
  t.regex((await lab.lab(['links'])).stdout, /^di-nic0 +Ethernet wire +up/m);
  const down = await lab.lab(['fault', 'di-nic1', 'down', 'loss=1%']);
  t.is(down.stdout.trim(), 'di-nic1: tx loss 0.01, down; rx loss 0.01, down');
  const after = JSON.parse((await lab.lab(['links', '--json'])).stdout) as LinkView[];
  t.false(after.find((l) => l.port === 'di-nic1')!.up);
});
