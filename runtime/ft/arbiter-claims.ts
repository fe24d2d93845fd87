import { ArbiterUnavailableError, type Arbiter } from '../arbiter/arbiter.js';

export type ClaimAnswer = { type: 'arbiter.won' } | { type: 'arbiter.lost' } | { type: 'arbiter.unreachable' };

/** Unreachable attempts are reported at most this often while the node keeps trying. */
export const UNREACHABLE_REPORT_MS = 1000;

/**
 * One node's test-and-set attempts on the arbiter, and what the operator is told about them.
 * The charts decide when to claim and what an answer means; this supplies the call and the
 * words. DESIGN §3: "one that cannot reach the arbiter keeps trying and releases no output":
 * silence while it does would leave an operator guessing, so each failure says which arbiter
 * and which error, at a bounded rate; a loss names the holder of the key.
 */
export class ArbiterClaims {
  private failures = 0;
  private lastReportMs = -Infinity;
  /** Why the last claim was lost, for the halting line. */
  lostDetail = '';

  constructor(
    private readonly arbiter: Arbiter,
    private readonly claimant: string,
    private readonly report: (detail: string) => void,
    private readonly retryMs: number,
  ) {}

  claim(pairId: string, generation: number, answer: (e: ClaimAnswer) => void): void {
    this.arbiter.testAndSet(pairId, generation, this.claimant).then(
      async (r) => {
        if (this.failures > 0) this.report(`arbiter reachable again after ${this.failures} failed attempts`);
        this.failures = 0;
        if (r === 'lost') {
          const holder = await this.arbiter.holder(pairId, generation).catch(() => undefined);
          this.lostDetail = `generation ${generation} of pair ${pairId} is held by ${holder === undefined ? 'another replica' : JSON.stringify(holder)}`;
        }
        answer({ type: r === 'won' ? 'arbiter.won' : 'arbiter.lost' });
      },
      (e: unknown) => {
        this.failures++;
        const now = performance.now();
        if (now - this.lastReportMs >= UNREACHABLE_REPORT_MS) {
          this.lastReportMs = now;
          const why = e instanceof ArbiterUnavailableError ? e.message : `arbiter: ${(e as Error).message}`;
          this.report(`arbiter unreachable (attempt ${this.failures}): ${why}; retrying every ${this.retryMs} ms, releasing no output meanwhile`);
        }
        answer({ type: 'arbiter.unreachable' });
      },
    );
  }
}
