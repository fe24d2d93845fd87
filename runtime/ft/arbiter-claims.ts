import { fromPromise } from 'xstate';
import type { ClaimAttempt, ClaimVerdict } from '../../machines/arbiter-client.machine.js';
import { ArbiterUnavailableError, type Arbiter } from '../arbiter/arbiter.js';

/** Unreachable attempts are reported at most this often while the node keeps trying. */
export const UNREACHABLE_REPORT_MS = 1000;

/**
 * One node's test-and-set attempts on the arbiter, and what the operator is told about them.
 * The arbiter-client chart decides when to try again and how long to wait; the primary and
 * backup charts decide what a verdict means. This supplies the call and the words. DESIGN §3:
 * "one that cannot reach the arbiter keeps trying and releases no output": silence while it
 * does would leave an operator guessing, so each failure says which arbiter and which error,
 * at a bounded rate; a loss names the holder of the key.
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
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * The arbiter client's `testAndSet` actor for this node. `pairId` is read at each attempt:
   * a backup learns its pair instance only when the primary admits it.
   */
  logic(pairId: () => string) {
    return fromPromise<ClaimVerdict, ClaimAttempt>(({ input }) => this.attempt(pairId(), input));
  }

  /** One test-and-set. Resolves the verdict; rejects (after saying so) when the arbiter is unreachable. */
  async attempt(pairId: string, a: ClaimAttempt): Promise<ClaimVerdict> {
    let r: ClaimVerdict;
    try {
      r = await this.arbiter.testAndSet(pairId, a.generation, this.claimant);
    } catch (e) {
      this.failures++;
      const now = this.now();
      if (now - this.lastReportMs >= UNREACHABLE_REPORT_MS) {
        this.lastReportMs = now;
        const why = e instanceof ArbiterUnavailableError ? e.message : `arbiter: ${(e as Error).message}`;
        this.report(`arbiter unreachable (attempt ${a.attempt}): ${why}; retrying in ${a.retryInMs} ms, releasing no output meanwhile`);
      }
      throw e;
    }
    if (this.failures > 0) this.report(`arbiter reachable again after ${this.failures} failed attempts`);
    this.failures = 0;
    if (r === 'lost') {
      const holder = await this.arbiter.holder(pairId, a.generation).catch(() => undefined);
      this.lostDetail = `generation ${a.generation} of pair ${pairId} is held by ${holder === undefined ? 'another replica' : JSON.stringify(holder)}`;
    }
    return r;
  }
}
