// The Debian mirror the lab builds from is the host's own (read from its apt sources at run
// time, never written into the repo). LAB_MIRROR overrides it.
import { readFileSync, readdirSync } from 'node:fs';

export function hostMirror(): string {
  if (process.env.LAB_MIRROR) return process.env.LAB_MIRROR;
  const texts: string[] = [];
  const read = (f: string) => {
    try {
      texts.push(readFileSync(f, 'utf8'));
    } catch {}
  };
  read('/etc/apt/sources.list');
  try {
    for (const f of readdirSync('/etc/apt/sources.list.d')) read(`/etc/apt/sources.list.d/${f}`);
  } catch {}
  for (const text of texts) {
    // one-line format: deb [opts] URI suite ...; deb822 format: URIs: URI
    for (const m of text.matchAll(/^\s*(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+)/gm)) {
      const uri = m[1]!.replace(/\/+$/, '');
      if (/\/debian$/.test(uri)) return uri;
    }
  }
  throw new Error('cannot find a Debian mirror in /etc/apt/sources.list{,.d}; set LAB_MIRROR to one (e.g. a URL ending in /debian)');
}
