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
  /** When the current batch's first slice was sized (-1: the next budget() starts a batch). */
  private batchMs = -1;

  constructor(
    private readonly machine: Machine,
    private readonly max: number,
    private readonly sliceMs: number,
    private readonly short: () => boolean,
  ) {}

  /** The CPU actor's `batch`: asked right before each batch. */
  readonly budget = (): number => {
    this.startMs = performance.now();
    if (this.batchMs < 0) this.batchMs = this.startMs;
    this.startIcount = this.machine.icount;
    this.sliced = this.short();
    if (!this.sliced) return this.max;
    if (this.rate === 0) return MIN_BATCH;
    return Math.max(MIN_BATCH, Math.min(this.max, Math.round(this.rate * this.sliceMs)));
  };

  /** After each batch (the CPU actor's `onBatch`): learn the rate from its last slice. */
  ended(): void {
    this.learn();
    this.batchMs = -1;
  }

  /**
   * The CPU actor's `moreSlices` for a sliced batch: learn the rate from the slice just run,
   * and say whether the batch may go on with another, i.e. while it has run less than
   * `spanMs` in all (then the event loop's turn is due: timers, the control port).
   */
  more(spanMs: number): boolean {
    this.learn();
    return this.sliced && performance.now() - this.batchMs < spanMs;
  }

  /**
   * A slice of a chained batch ended (the primary's `moreSlices`, which decides the chain
   * by other rules): learn the rate from it, as `ended()` would, but the batch goes on.
   */
  sliceEnded(): void {
    this.learn();
  }

  private learn(): void {
    const n = this.machine.icount - this.startIcount;
    // A batch cut short (an output, the log's horizon, wfi) says little about the rate. NOTE
    // half the floor: a soft slice (Hart.run's `soft`) ends up to a block short of its
    // budget, and the first probes of MIN_BATCH must still teach the rate.
    if (n < MIN_BATCH / 2) return;
    const ms = performance.now() - this.startMs;
    if (!(ms > 0)) return;
    const r = n / ms;
    this.rate = this.rate === 0 ? r : this.rate * 0.75 + r * 0.25;
  }
}

/**
 * The CPU actor's `schedule` for an FT node. A node that waits for its socket must turn its
 * event loop between batches, but a guest ends many batches itself after a few instructions
 * (a CSR write to mie or mstatus: a dns query costs six), and a turn for each (an epoll, the
 * timers, the immediates) costs more than the batch. A batch scheduled within `chainMs` of
 * this node's last turn runs as a microtask; a later one waits for a turn, so the socket is
 * read at most about `chainMs` plus one batch late. The microtask comes two hops after the
 * call: what the node queues when told of the batch's end (its log's flush, an ack; onBatch
 * runs right after the chart step that scheduled the next batch) goes out first.
 */
export class BatchChain {
  private turnMs = -Infinity;
  /** The CPU actor's runBatch: the same function every time, at most one queued. */
  private run: () => void = () => undefined;

  constructor(private readonly chainMs: number) {}

  /**
   * Whether a batch scheduled now would chain (run without an event-loop turn first): the
   * same test `schedule` makes. A node's `moreSlices` asks it so that a chain of slices in
   * one batch ends where a chain of batches would have: the turns stay where they were.
   */
  chaining(): boolean {
    return performance.now() - this.turnMs < this.chainMs;
  }

  readonly schedule = (run: () => void): void => {
    this.run = run;
    queueMicrotask(this.decide);
  };

  private readonly decide = (): void => {
    if (performance.now() - this.turnMs < this.chainMs) queueMicrotask(this.run);
    else setImmediate(this.afterTurn);
  };

  private readonly afterTurn = (): void => {
    this.turnMs = performance.now();
    this.run();
  };
}
