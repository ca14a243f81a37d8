/**
 * A memif port's poll window: after it sends, a port that expects a reply looks at its receive
 * ring once per event-loop turn for up to `windowUs`, with its interrupt masked (MASK_INT), so
 * the peer's flush finds it awake and skips the eventfd write, and this side takes the reply
 * without a wake-up from sleep. Where a halted CPU of a VM is slow to wake, that write and that
 * wake-up are most of a hop's cost.
 *
 * Turns, not a spin: each is a setImmediate, so the loop keeps serving the process's other
 * sockets (libuv polls them with a zero timeout while an immediate is pending). A turn that
 * found frames closes the window, unless the flush of what they drew extends it again; when the
 * window closes, `end` asks for signals and looks once more, so nothing published meanwhile
 * waits.
 *
 * Not every send draws a reply (a DI's data, completion and interrupt, an ACK), and a window that
 * finds nothing only takes a CPU someone else may want. So whether a window is opened is learnt
 * per kind of send (its frames and bytes, a stand-in for what it carried): a 2-bit saturating
 * counter per kind, as a branch predictor, up on a window that found frames, down on one that
 * did not; a kind predicted silent is still tried every PROBE_EVERY-th time, so it may come back.
 */

const KINDS = 32;
const PROBE_EVERY = 32;

export class ReplyPoll {
  private until = 0;
  private turn: NodeJS.Immediate | null = null;
  /** The kind of send the open window is for (credited or debited when it finds frames or ends). */
  private kind = 0;
  private readonly score = new Uint8Array(KINDS).fill(2);
  private readonly skipped = new Uint8Array(KINDS);

  /**
   * `look` takes what arrived and says whether anything had; `end` re-arms the interrupt. The
   * caller masks the interrupt before it first extends a window that is not open.
   */
  constructor(
    private readonly windowUs: number,
    private readonly look: () => boolean,
    private readonly end: () => void,
  ) {}

  /** A window is open: the receive side stays masked and leaves looking to the turns. */
  get open(): boolean {
    return this.turn !== null;
  }

  /**
   * `frames` of `bytes` in all were sent: whether to look for a reply (then keep looking for
   * `windowUs` from now, opening a window if none is open; the caller masks first if none was).
   */
  wants(frames: number, bytes: number): boolean {
    const k = kindOf(frames, bytes);
    return this.score[k]! >= 2 || ++this.skipped[k]! % PROBE_EVERY === 0;
  }

  /** Look for `windowUs` from now, for a send of `frames` and `bytes` (wants said yes). */
  extend(frames: number, bytes: number): void {
    this.kind = kindOf(frames, bytes);
    this.until = performance.now() + this.windowUs / 1000;
    this.turn ??= setImmediate(this.step);
  }

  /** The session or the port ended: no more turns, and no `end` (there is nothing to re-arm). */
  stop(): void {
    if (this.turn !== null) clearImmediate(this.turn);
    this.turn = null;
  }

  private readonly step = (): void => {
    if (this.look()) {
      if (this.turn === null) return; // the session ended while taking what arrived
      if (this.score[this.kind]! < 3) this.score[this.kind]!++;
      this.until = 0;
    } else if (performance.now() >= this.until) {
      if (this.until !== 0 && this.score[this.kind]! > 0) this.score[this.kind]!--;
      this.turn = null;
      this.end();
      return;
    }
    this.turn = setImmediate(this.step);
  };
}

/** A send's kind: its frames (up to 7) and its bytes in four sizes. */
function kindOf(frames: number, bytes: number): number {
  const per = bytes / frames;
  return Math.min(frames, 7) * 4 + (per < 128 ? 0 : per < 512 ? 1 : per < 2048 ? 2 : 3);
}

/**
 * A station's memif poll window, µs: PCIEOE_MEMIF_POLL_US when set (so a bench can turn polling
 * on or off in every station at once), else its --memif-poll-us, else 0 (none).
 */
export function memifPollUs(option: string | undefined, env: NodeJS.ProcessEnv = process.env): number {
  const v = env.PCIEOE_MEMIF_POLL_US || option;
  if (v === undefined || v === '') return 0;
  const us = Number(v);
  if (!(us >= 0)) throw new Error(`memif poll window ${v}: expected a number of µs >= 0`);
  return us;
}
