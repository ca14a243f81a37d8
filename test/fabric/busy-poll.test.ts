import test from 'ava';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { type Clock, realClock } from '../../src/fabric/clock.ts';
import { BusyPoller } from '../../src/fabric/switch/busy-poll.ts';
import { until } from '../support/until.ts';

test('busy polling starts on a kick, lasts while kicks keep coming, and stops after the idle window', async (t) => {
  // The loop really spins (realClock's zero timers), but time is the test's: it passes only when the test says.
  let now = 0;
  const clock: Clock = { ...realClock, now: () => now };
  const poller = new BusyPoller(2000, clock);
  t.false(poller.polling);
  poller.kick();
  t.true(poller.polling);
  for (let i = 0; i < 5; i++) {
    now += 1;
    await nextTurn();
    poller.kick();
  }
  t.true(poller.polling, 'kicked every 1 ms, within the 2 ms window');
  const last = now;
  await until(() => {
    now += 0.5;
    return !poller.polling;
  }, 'polling to stop once idle for longer than the window');
  t.true(now - last > 2, `stopped after ${now - last} ms idle`);
  poller.kick();
  t.true(poller.polling);
  poller.close();
  await until(() => !poller.polling, 'polling to stop after close');
  t.throws(() => new BusyPoller(0, clock), { message: /busy-poll window/ });
});
