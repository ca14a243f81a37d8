// limitedLogger: each level keeps its own few lines per interval, and says at that level how many it left out.
import test from 'ava';
import { limitedLogger } from '../../src/common/log-limiter.ts';
import type { LogLevel } from '../../src/common/logger.ts';

test('limitedLogger: a few lines per level per interval, a count of the rest, errors not hidden by warnings', (t) => {
  let now = 0;
  const lines: [LogLevel, string][] = [];
  const log = limitedLogger((level, m) => lines.push([level, m]), { lines: 2, intervalMs: 1000, now: () => now });
  for (let i = 0; i < 100; i++) log('warn', `w${i}`);
  log('error', 'e0');
  t.deepEqual(lines, [['warn', 'w0'], ['warn', 'w1'], ['error', 'e0']]);
  now = 1000;
  log('warn', 'w100');
  t.deepEqual(lines.slice(3), [['warn', '(98 more like the above left out)'], ['warn', 'w100']]);
});
