// YAML text to plain data (mappings, lists, strings, numbers, booleans, null) for schema
// checking, where every problem is reported rather than thrown: the yaml library throws on
// alias bombs and unresolved aliases in toJS(), and its explicit tags (!!binary, !!set,
// !!omap, !!timestamp) produce Uint8Array, Set, Map and Date, which a schema then
// describes by their hundreds of methods rather than as "not allowed here".
import { parseDocument } from 'yaml';

export type PlainYaml = { value: unknown; problems?: undefined } | { value?: undefined; problems: string[] };

export function parsePlainYaml(text: string): PlainYaml {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length) return { problems: doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`) };
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (err) {
    return { problems: [`YAML: ${(err as Error).message}`] };
  }
  const problems: string[] = [];
  checkPlain(value, [], new Set(), problems);
  return problems.length ? { problems } : { value };
}

/** `inside`: the lists and mappings enclosing `v` (an alias to one of them makes a cycle). */
function checkPlain(v: unknown, path: (string | number)[], inside: Set<object>, problems: string[]): void {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return;
  const proto = typeof v === 'object' ? Object.getPrototypeOf(v) : undefined;
  if (Array.isArray(v) || proto === Object.prototype || proto === null) {
    if (inside.has(v as object)) {
      problems.push(`${formatYamlPath(path)}: an alias that contains itself`);
      return;
    }
    inside.add(v as object);
    for (const [k, x] of Object.entries(v as object)) checkPlain(x, [...path, Array.isArray(v) ? Number(k) : k], inside, problems);
    inside.delete(v as object);
    return;
  }
  const what = v instanceof Uint8Array ? '!!binary' : v instanceof Set ? '!!set' : v instanceof Map ? '!!omap or !!pairs' : v instanceof Date ? '!!timestamp' : typeof v;
  problems.push(`${formatYamlPath(path)}: ${what} is not allowed here (expected a mapping, list, text, number or true/false)`);
}

/** `vms[1].memory`, as topology problems name their place. */
export function formatYamlPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out ? `.${String(key)}` : String(key);
  return out || '(top level)';
}
