// Fuzzing the topology parser (src/lab/topology.ts) with the shipped topologies
// mutated (keys dropped, added, values replaced by anything), arbitrary YAML
// documents, YAML tags and aliases, and text that is hardly YAML. Each case ends
// in a Topology that holds together, or a TopologyError listing problems that
// each name a place in the file — never any other exception.
import test from 'ava';
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { TopologyError, parseTopology, type Topology } from '../../src/lab/topology.ts';
import { fuzzParams } from '../support/fuzz.ts';

const DIR = 'lab/topologies';
const shipped = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => parse(readFileSync(join(DIR, f), 'utf8')) as unknown);

type Edit = { at: number; op: 'delete' | 'replace' | 'add' | 'duplicate'; key: string; value: unknown };

/** Applies an edit to the `at`-th (modulo) list or mapping of a copy of `doc`. */
function mutate(doc: unknown, edits: Edit[]): unknown {
  const copy = structuredClone(doc);
  for (const e of edits) {
    const nodes: (Record<string, unknown> | unknown[])[] = [];
    const walk = (v: unknown) => {
      if (v && typeof v === 'object') {
        nodes.push(v as Record<string, unknown>);
        Object.values(v).forEach(walk);
      }
    };
    walk(copy);
    const node = nodes[e.at % nodes.length];
    if (!node) continue;
    const keys = Object.keys(node);
    const key = keys.length ? keys[e.at % keys.length]! : e.key;
    const n = node as Record<string, unknown>;
    if (e.op === 'delete') {
      if (Array.isArray(node)) node.splice(Number(key), 1);
      else delete n[key];
    } else if (e.op === 'replace') n[key] = e.value;
    else if (e.op === 'add') {
      if (Array.isArray(node)) node.push(e.value);
      else n[e.key] = e.value;
    } else if (Array.isArray(node) && node.length) node.push(structuredClone(node[0]));
  }
  return copy;
}

const KEYS = ['name', 'vms', 'processes', 'hosts', 'dis', 'assign', 'switch', 'card', 'functions', 'nvme', 'testdev', 'size', 'slots', 'links', 'memory', 'cpus', 'devices', 'type', 'id', 'server', 'bus', 'pin', 'hi', 'host', 'function', 'slot', 'serial', 'lba', 'args', 'run'];
const scalar = fc.oneof(
  fc.constantFrom(0, 1, -1, 2, 8, 9, 31, 4096, 512, 1e308, 0.5, '', 'x', 'host-a', 'di/fn0', '256M', '1G', '0-1', 'tcg', 'nvme', 'vfio-user', 'nic', 'hi.0', null, true, false),
  fc.string(),
  fc.integer(),
  fc.double(),
);
const value = fc.oneof({ weight: 4, arbitrary: scalar }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) });
const edit: fc.Arbitrary<Edit> = fc.record({
  at: fc.nat(),
  op: fc.constantFrom('delete', 'replace', 'add', 'duplicate'),
  key: fc.oneof(fc.constantFrom(...KEYS), fc.string()),
  value,
});

const tagged = fc.constantFrom(
  'name: x\nvms: !!binary aGk=',
  'name: !!set {a}\n',
  'name: x\nvms: !!omap [{a: 1}]',
  'name: 2001-12-14\nvms: [{name: !!timestamp 2001-12-14}]',
  'a: &a [*a]',
  'a: *missing',
  'a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n',
  '<<: {name: x}\nvms: []',
  'name: x\n  bad indent: [',
  '%YAML 1.1\n---\nname: x\n',
  '--- a\n--- b\n',
);

const text: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.constantFrom(...shipped), fc.array(edit, { minLength: 1, maxLength: 4 })).map(([doc, edits]) => stringify(mutate(doc, edits))) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => stringify(v)) },
  { weight: 1, arbitrary: tagged },
  { weight: 1, arbitrary: fc.tuple(tagged, fc.string()).map(([a, b]) => a + b) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
);

/** What a parsed topology must hold: at least one VM, unique names, devices that reach a process. */
function topologyProblem(t: Topology): string | undefined {
  if (t.vms.length === 0) return 'no VMs';
  const unique = (names: string[]) => new Set(names).size === names.length;
  if (!unique(t.vms.map((v) => v.name))) return 'duplicate VM names';
  if (!unique(t.processes.map((p) => p.name))) return 'duplicate process names';
  const procs = new Set(t.processes.map((p) => p.name));
  for (const v of t.vms) {
    for (const d of v.devices) if ('server' in d && !procs.has(d.server.split('/')[0]!)) return `${v.name}.${d.id} names no process`;
  }
  return undefined;
}

test('fuzz: topology YAML ends in a consistent Topology or a TopologyError naming each problem\'s place, never another exception', (t) => {
  let parsed = 0;
  let refused = 0;
  fc.assert(
    fc.property(text, (yaml) => {
      let topo: Topology;
      try {
        topo = parseTopology(yaml, 'fuzz.yaml');
      } catch (err) {
        if (!(err instanceof TopologyError)) {
          t.log(`${JSON.stringify(yaml).slice(0, 400)} threw ${(err as Error).stack}`);
          return false;
        }
        refused++;
        const bad = err.problems.find((p) => !/^(YAML: .+|[^:\s][^:]*: .+)$/s.test(p));
        if (err.problems.length === 0 || bad !== undefined) {
          t.log(`${JSON.stringify(yaml).slice(0, 400)}: problem without a place: ${JSON.stringify(bad)}`);
          return false;
        }
        return true;
      }
      parsed++;
      const problem = topologyProblem(topo);
      if (problem) t.log(`${JSON.stringify(yaml).slice(0, 400)} parsed with ${problem}`);
      return problem === undefined;
    }),
    fuzzParams(t, 1000),
  );
  t.log(`${parsed} parsed, ${refused} refused`);
  t.true(parsed > 0 && refused > 0, 'both outcomes were reached');
});
