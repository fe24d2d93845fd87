import type { Observable } from 'rxjs';
import type { LogEntry } from '../log/entry.js';

/** Lifecycle of a logging channel, seen from either end. */
export type ChannelEvent =
  | { type: 'channel.open' }
  /** The stream broke (bad frame, transport error); no more entries will arrive. */
  | { type: 'channel.failed'; error: Error }
  /** Closed in order, by this end ('local') or the other ('peer'). */
  | { type: 'channel.closed'; by: 'local' | 'peer' };

export interface Lag {
  /** Entries sent but not yet acknowledged. */
  entries: number;
  /** Encoded bytes of those entries. */
  bytes: number;
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

/** The backup's side of the logging channel. */
export interface BackupEnd {
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
  highWaterBytes?: number;
  lowWaterBytes?: number;
  highWaterEntries?: number;
  lowWaterEntries?: number;
}
