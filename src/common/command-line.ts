/**
 * Command lines of the lab's process entry points: `--help` prints the usage and exits 0, a
 * usage error prints what was wrong and the usage and exits 2 — the same for every process.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export interface CommandLine {
  /** Process name, the first word of every message. */
  name: string;
  /** The usage text, from "usage:" on. */
  usage: string;
}

/** Report a usage error and exit 2. */
export function usageError(cl: CommandLine, message: string): never {
  console.error(`${cl.name}: ${message}\n${cl.usage}`);
  process.exit(2);
}

/** Exit 0 with the usage on stdout when the arguments ask for help. */
export function exitOnHelp(cl: CommandLine, argv: readonly string[] = process.argv.slice(2)): void {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(cl.usage);
    process.exit(0);
  }
}

/** util.parseArgs with `--help` and usage errors handled as above. */
export function parseCommandLine<T extends NonNullable<ParseArgsConfig['options']>>(
  cl: CommandLine,
  options: T,
  config: { allowPositionals?: boolean; args?: string[] } = {},
) {
  exitOnHelp(cl, config.args);
  try {
    return parseArgs({ options, strict: true, allowPositionals: config.allowPositionals ?? false, ...(config.args ? { args: config.args } : {}) });
  } catch (err) {
    return usageError(cl, (err as Error).message);
  }
}
