/**
 * The lines of a process log that match `re`. Tests assert these are none
 * (`t.deepEqual(logLines(log, re), [])`) rather than `t.notRegex(log, re)`:
 * a failure then shows the offending lines, not a whole log the runner cuts short.
 */
export const logLines = (log: string, re: RegExp): string[] => log.split('\n').filter((l) => re.test(l));
