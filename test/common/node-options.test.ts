import test from 'ava';
import { execFileSync } from 'node:child_process';
import { LAB_NODE_OPTIONS, labNodeArgs } from '../../src/common/node-options.ts';

test('this node takes the lab processes\' options (an unknown one would stop every lab process at start)', (t) => {
  const out = execFileSync(process.execPath, [...LAB_NODE_OPTIONS, '-e', `console.log(process.execArgv.slice(0, ${LAB_NODE_OPTIONS.length}).join(' '))`], { encoding: 'utf8' });
  t.is(out.trim(), LAB_NODE_OPTIONS.join(' '));
  t.throws(() => execFileSync(process.execPath, ['--no-such-option-here', '-e', '0'], { stdio: 'ignore' }), undefined, 'an unknown option stops node');
});

test('LAB_NODE_ARGS comes after the lab\'s options, so a later flag undoes one; extra options last', (t) => {
  const before = process.env.LAB_NODE_ARGS;
  try {
    process.env.LAB_NODE_ARGS = ' --no-single-threaded-gc  --trace-gc ';
    t.deepEqual(labNodeArgs(['--cpu-prof']), [...LAB_NODE_OPTIONS, '--no-single-threaded-gc', '--trace-gc', '--cpu-prof']);
    delete process.env.LAB_NODE_ARGS;
    t.deepEqual(labNodeArgs(), [...LAB_NODE_OPTIONS]);
  } finally {
    if (before === undefined) delete process.env.LAB_NODE_ARGS;
    else process.env.LAB_NODE_ARGS = before;
  }
});
