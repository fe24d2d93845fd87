/**
 * When each step of a backup's takeover happened (issue 13: where a slow go-live spends its
 * time): the backup chart's suspicion, claim and won claim, the replay of the rest done, then
 * what the host adds (I/O released, disk locked, ports bound, first answer). Steps are marked
 * once each, on this thread's clock; `line()` gives them in time order, in ms after the
 * suspicion, for the one line a takeover reports.
 */
export class GoLivePhases {
  private readonly at = new Map<string, number>();

  mark(step: string, now = performance.now()): void {
    if (!this.at.has(step)) this.at.set(step, now);
  }

  has(step: string): boolean {
    return this.at.has(step);
  }

  /** A suspicion that ended with the primary heard again: the next one starts afresh. */
  reset(): void {
    this.at.clear();
  }

  /** The backup chart's state, as it reports it after every event. */
  chartState(value: unknown): void {
    if (value === 'suspecting') this.mark('suspected');
    else if (value === 'claiming') this.mark('claiming');
    else if (value === 'goingLive') this.mark('claim won');
    else if (value === 'replaying' && !this.has('claim won')) this.reset();
  }

  /** `go-live phases (ms after suspicion): suspected 0.0, claiming 101.2, ...` */
  line(): string {
    const steps = [...this.at.entries()].sort((a, b) => a[1] - b[1]);
    const t0 = this.at.get('suspected') ?? steps[0]?.[1] ?? 0;
    return `go-live phases (ms after suspicion): ${steps.map(([k, t]) => `${k} ${(t - t0).toFixed(1)}`).join(', ')}`;
  }
}
