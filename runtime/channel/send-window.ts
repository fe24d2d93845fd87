import { BehaviorSubject, type Observable } from 'rxjs';
import type { ChannelStats, FlowControlOptions, Lag } from './channel.js';
import { Encoder } from '../log/codec.js';
import type { LogEntry } from '../log/entry.js';

export const DEFAULT_HIGH_WATER_BYTES = 4 * 1024 * 1024;
export const DEFAULT_HIGH_WATER_ENTRIES = 100_000;
/**
 * The oldest unacknowledged entry may be this old (ms) before the primary pauses. A backup acks
 * on receipt until its replay falls behind (BackupNode's `ackLagMs`, half of this), then only
 * what it has replayed: so this bounds how far the backup's execution lags, and with it the
 * replay a failover waits for (DESIGN §3 Flow control: time or bytes).
 */
export const DEFAULT_HIGH_WATER_MS = 200;

/** What a change of the window crossed: the high-water mark upwards, the low one downwards. */
export type WindowCrossing = 'full' | 'drained' | undefined;

/**
 * What the primary has sent and the backup has not acknowledged yet: the lag that flow
 * control bounds (DESIGN §3): in entries, bytes and the age of the oldest. It reports when the
 * lag crosses a mark; whether the sender is paused is the channel chart's decision
 * (hysteresis: paused at the high mark, flowing again at the low one). It remembers only which
 * crossing it reported last: the age crosses its mark between calls, not at one.
 */
export class SendWindow {
  private readonly seqs: number[] = [];
  private readonly sizes: number[] = [];
  /** When each unacknowledged frame was sent (performance.now()). */
  private readonly times: number[] = [];
  private head = 0;
  private bytes = 0;
  private readonly acked = new BehaviorSubject<number>(-1);
  private readonly highBytes: number;
  private readonly lowBytes: number;
  private readonly highEntries: number;
  private readonly lowEntries: number;
  private readonly highMs: number;
  private readonly lowMs: number;
  private lastSent = -1;
  /** The last crossing reported was 'full' (the next to report is 'drained'). */
  private wasAbove = false;
  private readonly encoder = new Encoder();
  private readonly counts: ChannelStats = { bytesSent: 0, entriesSent: 0 };

  readonly acked$: Observable<number> = this.acked.asObservable();

  constructor(opts: FlowControlOptions = {}) {
    this.highBytes = opts.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.lowBytes = opts.lowWaterBytes ?? Math.floor(this.highBytes / 4);
    this.highEntries = opts.highWaterEntries ?? DEFAULT_HIGH_WATER_ENTRIES;
    this.lowEntries = opts.lowWaterEntries ?? Math.floor(this.highEntries / 4);
    this.highMs = opts.highWaterMs ?? DEFAULT_HIGH_WATER_MS;
    this.lowMs = opts.lowWaterMs ?? this.highMs / 4;
    if (!(this.lowBytes <= this.highBytes && this.lowEntries <= this.highEntries && this.lowMs <= this.highMs)) {
      throw new RangeError('SendWindow: low-water mark above high-water mark');
    }
  }

  get ackedSeq(): number {
    return this.acked.value;
  }

  get lag(): Lag {
    return { entries: this.seqs.length - this.head, bytes: this.bytes, ms: this.age(performance.now()) };
  }

  /** How long the oldest unacknowledged frame has waited (0: none waits). */
  private age(now: number): number {
    return this.head < this.seqs.length ? now - this.times[this.head]! : 0;
  }

  /** Over the high-water mark, and not back under the low one since (the crossing is reported once). */
  get full(): boolean {
    if (!this.wasAbove && this.above()) this.wasAbove = true;
    return this.wasAbove;
  }

  private above(now = performance.now()): boolean {
    return this.bytes > this.highBytes || this.seqs.length - this.head > this.highEntries || this.age(now) > this.highMs;
  }

  private below(now = performance.now()): boolean {
    return this.bytes <= this.lowBytes && this.seqs.length - this.head <= this.lowEntries && this.age(now) <= this.lowMs;
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
    // NOTE the age crosses its mark between sends; the next send (a heartbeat at the latest,
    // which a paused primary still sends) reports it.
    const now = performance.now();
    this.seqs.push(seq);
    this.sizes.push(size);
    this.times.push(now);
    this.bytes += size;
    this.lastSent = seq;
    if (this.wasAbove || !this.above(now)) return undefined;
    this.wasAbove = true;
    return 'full';
  }

  /**
   * The backup applied everything up to `seq`; 'drained' when this brought the lag down to the
   * low-water mark. Stale acks are ignored; acks past the last sent entry are capped.
   */
  ack(seq: number): WindowCrossing {
    const upTo = Math.min(seq, this.lastSent);
    if (upTo <= this.acked.value) return undefined;
    const now = performance.now();
    const wasAbove = this.wasAbove;
    while (this.head < this.seqs.length && this.seqs[this.head]! <= upTo) {
      this.bytes -= this.sizes[this.head]!;
      this.head++;
    }
    // Compact now and then so the arrays do not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.seqs.length) {
      this.seqs.splice(0, this.head);
      this.sizes.splice(0, this.head);
      this.times.splice(0, this.head);
      this.head = 0;
    }
    this.acked.next(upTo);
    if (!wasAbove || !this.below(now)) return undefined;
    this.wasAbove = false;
    return 'drained';
  }

  complete(): void {
    this.acked.complete();
  }
}
