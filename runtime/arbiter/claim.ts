import { ArbiterUnavailableError, type Arbiter, type ClaimResult } from './arbiter.js';

export interface ClaimOptions {
  /** Pause between attempts while the arbiter is unreachable. */
  retryMs: number;
  /** Aborting stops the retries; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Told about each failed attempt, e.g. to report it as an event. */
  onUnavailable?: (err: ArbiterUnavailableError, attempt: number) => void;
}

const pause = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * Claims the key until the arbiter decides (DESIGN §3: "one that cannot reach the arbiter
 * keeps trying"). Only ArbiterUnavailableError is retried; anything else rejects at once.
 */
export async function claimUntilDecided(
  arbiter: Arbiter,
  pairId: string,
  generation: number,
  claimant: string,
  opts: ClaimOptions,
): Promise<ClaimResult> {
  for (let attempt = 1; ; attempt++) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    try {
      return await arbiter.testAndSet(pairId, generation, claimant);
    } catch (err) {
      if (!(err instanceof ArbiterUnavailableError)) throw err;
      opts.onUnavailable?.(err, attempt);
    }
    await pause(opts.retryMs, opts.signal);
  }
}
