import test from 'ava';
import { BusyPoller } from '../../src/fabric/switch/busy-poll.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('busy polling starts on a kick, lasts while kicks keep coming, and stops after the idle window', async (t) => {
  const poller = new BusyPoller(2000);
  t.false(poller.polling);
  poller.kick();
  t.true(poller.polling);
  for (let i = 0; i < 5; i++) {
    await sleep(1);
    poller.kick();
  }
  t.true(poller.polling, 'kicked within the window');
  await sleep(30);
  t.false(poller.polling, 'idle for longer than the window');
  poller.kick();
  t.true(poller.polling);
  poller.close();
  await sleep(5);
  t.false(poller.polling);
  t.throws(() => new BusyPoller(0), { message: /busy-poll window/ });
});
