// Work deferred to the end of a turn runs after every promise continuation of the turn, before
// the event loop's next phase, in the order deferred, including work deferred while it runs.
import test from 'ava';
import { atTurnEnd } from '../../src/common/turn-end.ts';

test.serial('deferred work runs once the turn\'s continuations have run, before the check phase, in order', async (t) => {
  const seen: string[] = [];
  await new Promise<void>((done) => {
    setTimeout(() => {
      setImmediate(() => {
        seen.push('immediate');
        done();
      });
      atTurnEnd(() => seen.push('first'));
      void Promise.resolve()
        .then(() => seen.push('continuation 1'))
        .then(() => {
          seen.push('continuation 2');
          atTurnEnd(() => seen.push('second'));
        })
        .then(() => seen.push('continuation 3'));
      seen.push('sync');
    }, 0);
  });
  t.deepEqual(seen, ['sync', 'continuation 1', 'continuation 2', 'continuation 3', 'first', 'second', 'immediate']);
});

test.serial('work deferred while the run is under way runs in the same run, before any microtask it queues', async (t) => {
  const seen: string[] = [];
  atTurnEnd(() => {
    seen.push('interrupt');
    queueMicrotask(() => seen.push('flush'));
    atTurnEnd(() => seen.push('release'));
  });
  await new Promise((r) => setImmediate(r));
  t.deepEqual(seen, ['interrupt', 'release', 'flush']);
});

test.serial('a callback that throws is dropped; the ones after it still run', async (t) => {
  const seen: string[] = [];
  const onUncaught = (err: Error) => seen.push(`uncaught ${err.message}`);
  const listeners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', onUncaught);
  try {
    atTurnEnd(() => seen.push('before'));
    atTurnEnd(() => {
      throw new Error('boom');
    });
    atTurnEnd(() => seen.push('after'));
    await new Promise((r) => setTimeout(r, 5));
    atTurnEnd(() => seen.push('next turn'));
    await new Promise((r) => setImmediate(r));
  } finally {
    process.removeListener('uncaughtException', onUncaught);
    for (const l of listeners) process.on('uncaughtException', l);
  }
  t.deepEqual(seen, ['before', 'uncaught boom', 'after', 'next turn']);
});
