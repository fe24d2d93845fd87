// The split-brain guard (DESIGN §3): whoever wants to go live must first win an atomic
// test-and-set on the key (pairId, generation). Exactly one claimant ever wins a key.

export interface Arbiter {
  /**
   * Atomic test-and-set of the key (pairId, generation). Resolves 'won' for exactly one
   * claimant ever (asking again as that claimant answers 'won' again, so a retry after a lost
   * reply is safe); 'lost' for everyone else. Rejects with ArbiterUnavailableError when the
   * arbiter cannot be reached: the caller keeps trying and never goes live meanwhile.
   */
  testAndSet(pairId: string, generation: number, claimant: string): Promise<'won' | 'lost'>;
  /** Who holds the key, if anyone. */
  holder(pairId: string, generation: number): Promise<string | undefined>;
  close(): Promise<void>;
}

export type ClaimResult = 'won' | 'lost';

/** The arbiter could not be reached; nothing was decided. */
export class ArbiterUnavailableError extends Error {
  override readonly name = 'ArbiterUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const PAIR_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

/** Rejects keys that could not name a file or an etcd key safely. Throws RangeError. */
export function checkKey(pairId: string, generation: number, claimant?: string): void {
  if (!PAIR_ID.test(pairId)) throw new RangeError(`arbiter: bad pairId ${JSON.stringify(pairId)}`);
  if (!Number.isSafeInteger(generation) || generation < 0) throw new RangeError(`arbiter: bad generation ${generation}`);
  if (claimant !== undefined && (typeof claimant !== 'string' || claimant.length === 0 || claimant.length > 256)) {
    throw new RangeError(`arbiter: bad claimant ${JSON.stringify(claimant)}`);
  }
}
