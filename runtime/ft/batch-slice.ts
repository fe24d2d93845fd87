import type { Machine } from '../machine.js';

/** Smallest sliced batch: below this the batch's own overhead (chart event, turn) dominates. */
const MIN_BATCH = 4096;

/**
 * Sizes an FT node's CPU batches in wall time. A node learns of an ack (the primary) or of
 * arriving entries (the backup) only between batches, when its event loop turns, and a batch
 * of a million instructions lasts milliseconds: the output rule would wait that long. While
 * `short()` says the node waits for its socket, a batch is sized to about `sliceMs` at the
 * rate the previous sized batches ran; otherwise it is `max`. No timer, two clock reads a batch.
 */
export class BatchSlicer {
  /** Instructions per millisecond, smoothed over recent batches (0: not measured yet). */
  private rate = 0;
  private startMs = 0;
  private startIcount = 0;
  /** The batch running now was sized to a slice (it ends soon on its own). */
  sliced = false;

  constructor(
    private readonly machine: Machine,
    private readonly max: number,
    private readonly sliceMs: number,
    private readonly short: () => boolean,
  ) {}

  /** The CPU actor's `batch`: asked right before each batch. */
  readonly budget = (): number => {
    this.startMs = performance.now();
    this.startIcount = this.machine.icount;
    this.sliced = this.short();
    if (!this.sliced) return this.max;
    if (this.rate === 0) return MIN_BATCH;
    return Math.max(MIN_BATCH, Math.min(this.max, Math.round(this.rate * this.sliceMs)));
  };

  /** After each batch (the CPU actor's `onBatch`): learn the rate from the batch just run. */
  ended(): void {
    const n = this.machine.icount - this.startIcount;
    // A batch cut short (an output, the log's horizon, wfi) says little about the rate.
    if (n < MIN_BATCH) return;
    const ms = performance.now() - this.startMs;
    if (!(ms > 0)) return;
    const r = n / ms;
    this.rate = this.rate === 0 ? r : this.rate * 0.75 + r * 0.25;
  }
}
