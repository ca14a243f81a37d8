// Commands run in a guest wait on conditions too, never `sleep N`: these build the shell text.

/** Shell: re-check the shell condition `cond` every 50 ms; after `timeoutS` say what it waited for and exit 1. */
export function shUntil(cond: string, what: string, timeoutS = 60): string {
  const tries = Math.ceil(timeoutS * 20);
  return `i=0; until ${cond}; do i=$((i+1)); if [ $i -ge ${tries} ]; then echo ${JSON.stringify(`timed out waiting for ${what}`)} >&2; exit 1; fi; sleep 0.05; done`;
}

/**
 * Shell: wait until block device `dev` (a /sys/block name such as nvme0n1) has completed `ios`
 * more reads and writes than when this runs: I/O started in the background is really under way.
 */
export function shIoUnderway(dev: string, ios: number, timeoutS = 60): string {
  const done = `$(awk '{print $1 + $5}' /sys/block/${dev}/stat)`;
  return `base=${done}; ${shUntil(`[ ${done} -ge $((base + ${ios})) ]`, `${ios} I/Os on ${dev}`, timeoutS)}`;
}

/**
 * Shell: wait until a socket listens on TCP `port`, over IPv4 or IPv6 (state 0A in /proc/net/tcp
 * or tcp6; busybox nc listens on IPv6), so a client started next is not refused.
 */
export function shListening(port: number, timeoutS = 10): string {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return shUntil(`grep -qiE '^ *[0-9]+: [0-9A-F]+:${hex} [0-9A-F]+:0000 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null`, `a listener on TCP port ${port}`, timeoutS);
}
