import test from 'ava';
import { formatLogLine, processLogger, scriptName } from '../../src/common/logger.ts';

test('one line: UTC time, process name, level padded to a column, message', (t) => {
  const at = new Date(Date.UTC(2026, 11, 2, 12, 0, 0, 5));
  t.is(formatLogLine('di', 'warn', 'channel 1: link 0 down', at), '2026-12-02T12:00:00.005Z di warn  channel 1: link 0 down');
  t.is(formatLogLine('hi', 'error', 'x', at), '2026-12-02T12:00:00.005Z hi error x');
});

test('processLogger writes one formatted line per call', (t) => {
  const lines: string[] = [];
  const log = processLogger('nvme', (l) => lines.push(l));
  log('info', 'ready');
  log('error', 'gone');
  t.is(lines.length, 2);
  t.regex(lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z nvme info  ready$/);
  t.regex(lines[1]!, / nvme error gone$/);
});

test('the default process name comes from the script: a folder main.ts takes the folder name', (t) => {
  t.is(scriptName('/work/main/src/hi/main.ts'), 'hi');
  t.is(scriptName('/work/main/src/direct-attach/nvme-main.ts'), 'nvme-main');
  t.is(scriptName(''), 'node'); // no script (a REPL)
});
