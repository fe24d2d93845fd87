import { ArbiterUnavailableError, checkKey, type Arbiter, type ClaimResult } from './arbiter.js';

/** An arbiter in this process's memory: for in-process pairs and tests. */
export class InProcessArbiter implements Arbiter {
  private readonly holders = new Map<string, string>();
  private available = true;
  private closed = false;

  /** Fault injection: while unavailable every call rejects with ArbiterUnavailableError. */
  setAvailable(available: boolean): void {
    this.available = available;
  }

  private reachable(): void {
    if (this.closed) throw new Error('arbiter: closed');
    if (!this.available) throw new ArbiterUnavailableError('arbiter: unavailable (fault injected)');
  }

  async testAndSet(pairId: string, generation: number, claimant: string): Promise<ClaimResult> {
    checkKey(pairId, generation, claimant);
    // Answer a tick later, as a remote arbiter would, so callers cannot rely on synchrony.
    await Promise.resolve();
    this.reachable();
    const key = `${pairId}.${generation}`;
    const held = this.holders.get(key);
    if (held === undefined) {
      this.holders.set(key, claimant);
      return 'won';
    }
    return held === claimant ? 'won' : 'lost';
  }

  async holder(pairId: string, generation: number): Promise<string | undefined> {
    checkKey(pairId, generation);
    await Promise.resolve();
    this.reachable();
    return this.holders.get(`${pairId}.${generation}`);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
