// `lab fault <link> loss=10% delay=5ms down`: the words a user types, as the switch's fault
// settings (src/fabric/wire/faults.ts: loss, latency, jitter, … in ms, probabilities 0-1).
const PROBABILITIES: Record<string, string> = { loss: 'loss', duplicate: 'duplicate', reorder: 'reorder', corrupt: 'corrupt' };
const DELAYS: Record<string, string> = { delay: 'latency', latency: 'latency', jitter: 'jitter' };
const CLEAR = { loss: 0, duplicate: 0, reorder: 0, corrupt: 0, latency: 0, jitter: 0, rateGbps: 0, down: false };

export const FAULT_WORDS =
  '  loss=P duplicate=P reorder=P corrupt=P   a probability: 0.1 or 10%\n' +
  '  delay=T jitter=T                        one-way delay (to the µs) and its random extra (to the ms): 50us, 5ms, 0.5s, 5 (ms)\n' +
  '  rate=R                                  the wire\'s rate: 1gbps, 100mbps, 0.5 (Gb/s); 0: unlimited\n' +
  '  down | up                               the link drops everything | carries again\n' +
  '  clear                                   no faults, link up';

function number(word: string, text: string, units: Record<string, number>, fallback: number): number {
  const m = /^([0-9]*\.?[0-9]+)([a-z%]*)$/i.exec(text);
  const unit = m?.[2]?.toLowerCase() ?? '';
  const scale = unit === '' ? fallback : units[unit];
  if (!m || scale === undefined) throw new Error(`${word}: expected a number${Object.keys(units).length ? ` (units: ${Object.keys(units).join(', ')})` : ''}, got "${text}"`);
  return Number(m[1]) * scale;
}

/** The settings the words ask for; throws naming the word that is wrong. */
export function parseFaultWords(words: string[]): Record<string, number | boolean> {
  if (!words.length) throw new Error(`no fault given; expected some of:\n${FAULT_WORDS}`);
  const set: Record<string, number | boolean> = {};
  for (const w of words) {
    if (w === 'down' || w === 'up') set.down = w === 'down';
    else if (w === 'clear') Object.assign(set, CLEAR);
    else {
      const [key = '', value = ''] = w.split('=', 2);
      if (PROBABILITIES[key]) set[PROBABILITIES[key]] = number(w, value, { '%': 0.01 }, 1);
      else if (DELAYS[key]) set[DELAYS[key]] = number(w, value, { ms: 1, s: 1000, us: 0.001 }, 1);
      else if (key === 'rate') set.rateGbps = number(w, value, { gbps: 1, mbps: 0.001 }, 1);
      else throw new Error(`"${w}": not a fault; expected one of:\n${FAULT_WORDS}`);
    }
  }
  return set;
}

/** "loss 0.1, latency 5 ms" for the settings that are not the default; "no faults" when none. */
export function faultText(config: Record<string, unknown>): string {
  const shown = Object.entries(config).filter(([k, v]) => k !== 'reorderDelay' && v !== 0 && v !== false);
  return shown.length ? shown.map(([k, v]) => (v === true ? k : `${k} ${v}${k === 'latency' || k === 'jitter' ? ' ms' : ''}`)).join(', ') : 'no faults';
}
