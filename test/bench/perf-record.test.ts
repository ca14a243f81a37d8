// Reading `perf script` output (bench/lib/perf-record.ts): samples split per pid, each put in the
// category of where its CPU went. The stacks are cut from a real recording of a lab's HI (5990)
// and DI (5989) under QD 1 reads, in this VM (where the kernel's irq-enable is a hypervisor call
// and a context switch's or a wake-up's time lands on it).
import test from 'ava';
import { categorise, parsePerfScript, perfLine, perfSplits, PERF_FREQUENCY, tally } from '../../bench/lib/perf-record.ts';

const recorded = ` 5990 
\tffffffff82240c89 pvm_irq_enable ([kernel.kallsyms])
\tffffffff82240bb1 __raw_callee_save_pvm_irq_enable ([kernel.kallsyms])
\tffffffff8224fde0 _raw_spin_unlock_irq ([kernel.kallsyms])
\tffffffff8175c797 eventfd_write ([kernel.kallsyms])
\tffffffff816db9da vfs_write ([kernel.kallsyms])
\t          11b2ff __GI___libc_write (/usr/lib/x86_64-linux-gnu/libc.so.6)

 5990 
\tffffffff82240c89 pvm_irq_enable ([kernel.kallsyms])
\tffffffff82240bb1 __raw_callee_save_pvm_irq_enable ([kernel.kallsyms])
\tffffffff813aeb12 finish_task_switch.isra.0 ([kernel.kallsyms])
\tffffffff82246c44 __schedule ([kernel.kallsyms])
\tffffffff822477f3 schedule ([kernel.kallsyms])
\tffffffff8224ee04 schedule_hrtimeout_range_clock ([kernel.kallsyms])

 5990 
\t          108cae epoll_pwait (/usr/lib/x86_64-linux-gnu/libc.so.6)

 5989 
\t         14c46d8 Builtins_RecordWriteSaveFP (/usr/bin/node)
\t         152b29e Builtins_MapPrototypeSet (/usr/bin/node)
\t    7fcb270c3b27 JS:*startRead file:///work/main/src/fabric/tlp/endpoint.ts:1:4682 (/tmp/perf-5989.map)

 5989 
\t           1bead pcieoe::(anonymous namespace)::Crc32Vclmul (/work/main/native/build/Release/pcieoe_native.node)
\t           1c92d pcieoe::(anonymous namespace)::SealFrameJs (/work/main/native/build/Release/pcieoe_native.node)
\t         14d1546 Builtins_CallApiCallback (/usr/bin/node)

 5989 
\t    7fcb27069425 JS:^readMemory file:///work/main/src/fabric/tlp/endpoint.ts:1:3756 (/tmp/perf-5989.map)
\t         15bf404 Builtins_PromiseConstructor (/usr/bin/node)

 5989 
\tffffffff815fe9ed unmap_page_range ([kernel.kallsyms])
\t          16a380 __strnlen_evex (/usr/lib/x86_64-linux-gnu/libc.so.6)
`;

test('perf script samples: pid and frames, innermost first', (t) => {
  const s = parsePerfScript(recorded);
  t.deepEqual(
    s.map((x) => x.pid),
    [5990, 5990, 5990, 5989, 5989, 5989, 5989],
  );
  t.deepEqual(s[3]!.frames[2], { symbol: 'JS:*startRead file:///work/main/src/fabric/tlp/endpoint.ts:1:4682', dso: '/tmp/perf-5989.map' });
  t.is(s[0]!.frames.length, 6);
});

test('each sample goes where its innermost frame and the kernel frames below it say', (t) => {
  t.deepEqual(parsePerfScript(recorded).map(categorise), [
    'waking a process', // the eventfd write's wake-up, charged at irq-enable
    'context switch',
    'libc', // the system call instruction itself
    'V8 and Node',
    'addon',
    'JavaScript',
    'other kernel',
  ]);
  t.is(categorise({ pid: 1, frames: [] }), 'other');
});

test('per process: CPU µs per I/O from the sample count, categories most first', (t) => {
  const counts = tally(parsePerfScript(recorded));
  t.is(counts.get(5990)!.get('context switch'), 1);
  // One sample is 1/PERF_FREQUENCY s of CPU; over one I/O that many µs.
  const one = 1e6 / PERF_FREQUENCY;
  const [hi, di, none] = perfSplits(counts, { hi: 5990, di: 5989, gone: 42 }, 1);
  t.is(Math.round(hi!.totalUs), Math.round(3 * one));
  t.is(perfLine(hi!), `hi ${(3 * one).toFixed(0)} µs: waking a process ${one.toFixed(0)}, context switch ${one.toFixed(0)}, libc ${one.toFixed(0)}`);
  t.deepEqual(
    di!.parts.map(([c]) => c),
    ['V8 and Node', 'addon', 'JavaScript', 'other kernel'],
  );
  t.is(perfLine(none!), 'gone: no samples');
  // Categories under 1 µs per I/O are left out of the line.
  t.is(perfLine(perfSplits(counts, { hi: 5990 }, 1e6)[0]!), 'hi 0 µs: ');
});
