import { BehaviorSubject, type Observable } from 'rxjs';
import type { ChannelStats, FlowControlOptions, Lag } from './channel.js';
import { Encoder } from '../log/codec.js';
import type { LogEntry } from '../log/entry.js';

export const DEFAULT_HIGH_WATER_BYTES = 4 * 1024 * 1024;
export const DEFAULT_HIGH_WATER_ENTRIES = 100_000;

/** What a change of the window crossed: the high-water mark upwards, the low one downwards. */
export type WindowCrossing = 'full' | 'drained' | undefined;

/**
 * What the primary has sent and the backup has not acknowledged yet: the lag that flow
 * control bounds (DESIGN §3). It reports when the lag crosses a mark; whether the sender is
 * paused is the channel chart's decision (hysteresis: paused at the high mark, flowing again
 * at the low one), so this keeps no pressure state of its own.
 */
export class SendWindow {
  private readonly seqs: number[] = [];
  private readonly sizes: number[] = [];
  private head = 0;
  private bytes = 0;
  private readonly acked = new BehaviorSubject<number>(-1);
  private readonly highBytes: number;
  private readonly lowBytes: number;
  private readonly highEntries: number;
  private readonly lowEntries: number;
  private lastSent = -1;
  private readonly encoder = new Encoder();
  private readonly counts: ChannelStats = { bytesSent: 0, entriesSent: 0 };

  readonly acked$: Observable<number> = this.acked.asObservable();

  constructor(opts: FlowControlOptions = {}) {
    this.highBytes = opts.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.lowBytes = opts.lowWaterBytes ?? Math.floor(this.highBytes / 4);
    this.highEntries = opts.highWaterEntries ?? DEFAULT_HIGH_WATER_ENTRIES;
    this.lowEntries = opts.lowWaterEntries ?? Math.floor(this.highEntries / 4);
    if (!(this.lowBytes <= this.highBytes && this.lowEntries <= this.highEntries)) {
      throw new RangeError('SendWindow: low-water mark above high-water mark');
    }
  }

  get ackedSeq(): number {
    return this.acked.value;
  }

  get lag(): Lag {
    return { entries: this.seqs.length - this.head, bytes: this.bytes };
  }

  /** Above the high-water mark now. */
  get full(): boolean {
    return this.above();
  }

  private above(): boolean {
    return this.bytes > this.highBytes || this.seqs.length - this.head > this.highEntries;
  }

  private below(): boolean {
    return this.bytes <= this.lowBytes && this.seqs.length - this.head <= this.lowEntries;
  }

  /**
   * Encode `e` as the next frame of this stream (delta-coded against the previous one) and
   * count it as sent and unacknowledged. Every channel sends its frames through here, so the
   * lag flow control bounds and the bytes reported are the bytes that really leave.
   */
  frame(e: LogEntry): Uint8Array {
    const frame = this.encoder.encode(e);
    this.counts.bytesSent += frame.length;
    this.counts.entriesSent++;
    return frame;
  }

  /** Everything framed so far, acknowledged or not. */
  stats(): ChannelStats {
    return { ...this.counts };
  }

  /** Counts a frame of `size` bytes as sent; 'full' when this pushed the lag over the high-water mark. */
  sent(seq: number, size: number): WindowCrossing {
    const wasAbove = this.above();
    this.seqs.push(seq);
    this.sizes.push(size);
    this.bytes += size;
    this.lastSent = seq;
    return !wasAbove && this.above() ? 'full' : undefined;
  }

  /**
   * The backup applied everything up to `seq`; 'drained' when this brought the lag down to the
   * low-water mark. Stale acks are ignored; acks past the last sent entry are capped.
   */
  ack(seq: number): WindowCrossing {
    const upTo = Math.min(seq, this.lastSent);
    if (upTo <= this.acked.value) return undefined;
    const wasBelow = this.below();
    while (this.head < this.seqs.length && this.seqs[this.head]! <= upTo) {
      this.bytes -= this.sizes[this.head]!;
      this.head++;
    }
    // Compact now and then so the arrays do not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.seqs.length) {
      this.seqs.splice(0, this.head);
      this.sizes.splice(0, this.head);
      this.head = 0;
    }
    this.acked.next(upTo);
    return !wasBelow && this.below() ? 'drained' : undefined;
  }

  complete(): void {
    this.acked.complete();
  }
}
