// src/common — small helpers every process shares: the log line (this file), stale socket
// files, the line-JSON control socket, rate-limited logs, private directories. It may import
// only Node and native/; every other folder may import it.
//
// One log line format for every lab process, so `lab logs` and tests read them all the same way:
//   2026-12-02T12:00:00.000Z di warn  channel 1: link 0 down
// time (UTC), process name, level, message. Libraries take a Logger and prefix what they are
// ("vfio-user eep0: ..."); each process entry makes one with processLogger(name).
import { basename, dirname } from 'node:path';

export type LogLevel = 'info' | 'warn' | 'error';

export type Logger = (level: LogLevel, message: string) => void;

/** One log line, without the newline. */
export function formatLogLine(name: string, level: LogLevel, message: string, at: Date = new Date()): string {
  return `${at.toISOString()} ${name} ${level.padEnd(5)} ${message}`;
}

/** A Logger writing one line per call to stdout (the lab keeps each process's output as its log). */
export function processLogger(name: string = scriptName(), write: (line: string) => void = (line) => process.stdout.write(`${line}\n`)): Logger {
  return (level, message) => write(formatLogLine(name, level, message));
}

/** The running script's name: `src/hi/main.ts` gives "hi", `src/direct-attach/nvme-main.ts` "nvme-main". */
export function scriptName(argv1: string | undefined = process.argv[1]): string {
  if (!argv1) return 'node';
  const file = basename(argv1).replace(/\.[cm]?[jt]s$/, '');
  return file === 'main' || file === 'index' ? basename(dirname(argv1)) : file;
}
