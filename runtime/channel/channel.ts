import type { Observable } from 'rxjs';
import type { LogEntry } from '../log/entry.js';

/** Lifecycle of a logging channel, seen from either end. */
export type ChannelEvent =
  | { type: 'channel.open' }
  /** Nothing heard from the peer for the silence timeout (a report: the protocol decides). */
  | { type: 'channel.suspect' }
  /** The stream broke (bad frame, transport error); no more entries will arrive. */
  | { type: 'channel.failed'; error: Error }
  /** Closed in order, by this end ('local') or the other ('peer'). */
  | { type: 'channel.closed'; by: 'local' | 'peer' };

export interface Lag {
  /** Entries sent but not yet acknowledged. */
  entries: number;
  /** Encoded bytes of those entries. */
  bytes: number;
  /** How long the oldest of them has waited for its ack (ms; 0 when none waits). */
  ms: number;
}

/** The primary's side of the logging channel (DESIGN §2, §3). */
export interface PrimaryEnd {
  /** Encodes and enqueues `e`; never blocks. Throws RangeError for an invalid or out-of-order entry. */
  send(e: LogEntry): void;
  /** Highest seq the backup acknowledged; starts at -1, only rises. */
  readonly acked$: Observable<number>;
  readonly ackedSeq: number;
  readonly lag: Lag;
  /** true above the high-water mark (bytes or entries), false again below the low-water mark. */
  readonly pressure$: Observable<boolean>;
  readonly events$: Observable<ChannelEvent>;
  close(): void;
}

/** The primary's answer to a backup that asked to join its pair (DESIGN §3 Membership). */
export interface Admission {
  /** `boot`: replay from instruction 0; `join`: restore the snapshot that comes first. */
  mode: 'boot' | 'join';
  /** The pair instance: the first part of every arbiter key this backup may claim. */
  instance: string;
  /** The generation this backup claims if its primary goes silent. */
  generation: number;
  memoryMiB: number;
}

/** The primary turned this backup away (busy, another pair, image or memory size, wrong key). */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The backup's side of the logging channel. */
export interface BackupEnd {
  /**
   * Resolves once the primary admitted this backup; rejects with RefusedError when it was
   * turned away, or with the failure. Absent where the pair is built together in one program
   * (the embedded channels): admitted from the start.
   */
  readonly admission?: Promise<Admission>;
  /** Decoded entries, in order. A bad frame becomes a 'channel.failed' event and completion. */
  readonly entries$: Observable<LogEntry>;
  /** Acknowledges every entry up to `seq` (the highest applied); acks are coalesced. */
  ack(seq: number): void;
  readonly events$: Observable<ChannelEvent>;
  close(): void;
}

export interface ChannelStats {
  bytesSent: number;
  entriesSent: number;
}

export interface FlowControlOptions {
  /**
   * How long (ms) what nobody waits for may wait for company. An entry that no output or
   * other awaited ack depends on (an input, a timer tick, a heartbeat, a digest) waits up to
   * this long to leave with the next one, and so does an ack that covers only such entries;
   * an output marker, a snapshot or the end leaves in its own tick, with everything held before
   * it, and so does its ack. Fewer writes and fewer acks, the output rule's round trip
   * unchanged. 0: every tick's entries and acks leave in that tick.
   */
  holdMs?: number;
  highWaterBytes?: number;
  lowWaterBytes?: number;
  highWaterEntries?: number;
  lowWaterEntries?: number;
  /** The oldest unacknowledged entry's age that pauses the primary (ms; default DEFAULT_HIGH_WATER_MS). */
  highWaterMs?: number;
  /** ... and that lets it run again (default a quarter of highWaterMs). */
  lowWaterMs?: number;
}
