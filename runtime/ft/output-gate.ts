import { createHistogram } from 'node:perf_hooks';
import type { Output } from '../types.js';

/**
 * An output the outside world may see, numbered so a receiver can drop a duplicate.
 * `index` counts every output the guest ever produced (deterministic: the primary and the
 * backup number them identically), as TCP sequence numbers do (DESIGN §3, duplicate outputs).
 */
export interface NumberedOutput {
  index: number;
  output: Output;
}

export interface ReleasedOutput extends NumberedOutput {
  /** Which node released it and in which generation of the pair. */
  node: string;
  generation: number;
}

interface Held {
  index: number;
  output: Output;
  needSeq: number;
  heldAtMs: number;
}

/**
 * The output rule (DESIGN §3): an output is held until the backup has acknowledged every log
 * entry up to the output's icount. The VM keeps running; only the output waits.
 * `needSeq` is the seq of the output's marker entry: acking it proves the backup has every
 * input up to the output, so it would reproduce the output itself.
 */
export class OutputGate {
  private readonly queue: Held[] = [];
  private head = 0;
  /**
   * Every release's hold time in ns (3 significant figures): Node's HdrHistogram, so the
   * percentiles cover the whole run in fixed memory, not the last few thousand releases.
   */
  private readonly holdNs = createHistogram({ lowest: 1, highest: 1e13, figures: 3 });
  private releasedCount = 0;

  constructor(
    private readonly release: (o: NumberedOutput) => void,
    private readonly nowMs: () => number,
  ) {}

  get heldCount(): number {
    return this.queue.length - this.head;
  }

  get released(): number {
    return this.releasedCount;
  }

  hold(index: number, output: Output, needSeq: number): void {
    this.queue.push({ index, output, needSeq, heldAtMs: this.nowMs() });
  }

  /** Whether an ack up to `ackedSeq` would release an output (the oldest held one's marker is covered). */
  releasable(ackedSeq: number): boolean {
    return this.head < this.queue.length && this.queue[this.head]!.needSeq <= ackedSeq;
  }

  /** Release, in order, every output whose marker the backup has acknowledged. */
  acked(ackedSeq: number): void {
    while (this.head < this.queue.length && this.queue[this.head]!.needSeq <= ackedSeq) this.releaseHead();
    this.compact();
  }

  /** The node runs alone (it won the arbiter): nothing is left to wait for. `release` overrides the gate's. */
  releaseAll(release = this.release): void {
    while (this.head < this.queue.length) this.releaseHead(release);
    this.compact();
  }

  /** Drop what is held without releasing it (the node lost the arbiter and halts). */
  discard(): NumberedOutput[] {
    const dropped = this.queue.slice(this.head).map(({ index, output }) => ({ index, output }));
    this.queue.length = 0;
    this.head = 0;
    return dropped;
  }

  /** Median and p99 of hold time in milliseconds over every release so far. */
  latency(): { p50Ms: number; p99Ms: number; samples: number } {
    const h = this.holdNs;
    if (h.count === 0) return { p50Ms: 0, p99Ms: 0, samples: 0 };
    return { p50Ms: h.percentile(50) / 1e6, p99Ms: h.percentile(99) / 1e6, samples: h.count };
  }

  private releaseHead(release = this.release): void {
    const h = this.queue[this.head++]!;
    this.holdNs.record(Math.max(1, Math.round((this.nowMs() - h.heldAtMs) * 1e6)));
    this.releasedCount++;
    release({ index: h.index, output: h.output });
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}
