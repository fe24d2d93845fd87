// Pacing for a pair watched by a person (or a browser test standing in for one). A guest like
// `seq` ends about a second after a failover when its primary runs alone at full speed: too
// soon to press "Add backup" and then "Kill primary" again. The pacer holds this thread for
// part of every period (Atomics.wait: blocked, not spinning), so everything in it, the primary,
// a backup in this thread and the dashboard, runs at `share` of the host's speed. Timers keep
// their meaning: a hold is far shorter than the FT suspicion timeout (60 ms by default).

export interface Pacer {
  /** The share of each period this thread is left to run. */
  readonly share: number;
  stop(): void;
}

/**
 * Run this thread at `share` (0 < share <= 1) of its speed, in periods of `periodMs`.
 * A share of 1 does nothing.
 */
export function startPacer(share: number, periodMs = 20): Pacer {
  if (!(share > 0 && share <= 1)) throw new RangeError(`pace: the share must be in (0, 1], got ${share}`);
  if (!(periodMs > 0 && periodMs <= 40)) throw new RangeError(`pace: the period must be in (0, 40] ms, got ${periodMs}`);
  if (share === 1) return { share, stop: () => {} };
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const holdMs = periodMs * (1 - share);
  const runMs = periodMs * share;
  let timer: NodeJS.Timeout | undefined;
  // Run for runMs, then hold for holdMs; the next run is timed from the end of the hold.
  const next = (): void => {
    timer = setTimeout(() => {
      Atomics.wait(cell, 0, 0, holdMs);
      next();
    }, runMs);
    timer.unref();
  };
  next();
  return {
    share,
    stop: () => {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
