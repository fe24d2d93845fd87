// The embedded logging channel (DESIGN §4): both ends in one process, joined by RxJS and
// timers. It still encodes every entry to bytes and decodes them on the other side, so it
// exercises the codec, counts real bytes, and fails on a corrupt frame as TCP would.

import { Observable, ReplaySubject, Subject } from 'rxjs';
import { Decoder, LogFrameError } from '../log/codec.js';
import type { LogEntry } from '../log/entry.js';
import type { BackupEnd, ChannelEvent, ChannelStats, FlowControlOptions, Lag, PrimaryEnd } from './channel.js';
import { SendWindow } from './send-window.js';
import { concatBytes } from './bytes.js';

export interface InProcessChannelOptions extends FlowControlOptions {
  /** One-way delay of entries and acks. 0 still delivers asynchronously (a microtask later). */
  latencyMs?: number;
}

export interface InProcessChannel {
  primary: PrimaryEnd;
  backup: BackupEnd;
  /** Fault injection: silently drop everything in flight and from now on, both ways. */
  cut(): void;
  /** Fault injection: flip a bit in the next chunk the backup receives. */
  corrupt(): void;
  stats(): ChannelStats;
}


/** Runs `fn` after `ms` (a microtask when 0), preserving order among equal delays. */
const later = (ms: number, fn: () => void): void => {
  if (ms <= 0) queueMicrotask(fn);
  else setTimeout(fn, ms);
};

export function createInProcessChannel(opts: InProcessChannelOptions = {}): InProcessChannel {
  const latencyMs = opts.latencyMs ?? 0;
  const window = new SendWindow(opts);
  const decoder = new Decoder();
  const primaryEvents = new ReplaySubject<ChannelEvent>();
  const backupEvents = new ReplaySubject<ChannelEvent>();
  const entries = new Subject<LogEntry>();

  let state: 'open' | 'closed' | 'failed' = 'open';
  let isCut = false;
  let corruptNext = false;
  // Entries sent in the same tick travel as one chunk, as they would in one TCP segment.
  let outbound: Uint8Array[] = [];
  let outboundScheduled = false;
  // Chunks that arrived before the backup subscribed wait here, as in a socket buffer.
  const inbox: Uint8Array[] = [];
  let subscribers = 0;
  // Set by primary.close(); the close itself travels behind the data already sent.
  let closing = false;
  let closeArrived = false;
  let pendingAck = -1;
  let ackScheduled = false;

  const finish = (primaryEvent: ChannelEvent, backupEvent: ChannelEvent): void => {
    if (state !== 'open') return;
    state = primaryEvent.type === 'channel.failed' ? 'failed' : 'closed';
    outbound = [];
    inbox.length = 0;
    primaryEvents.next(primaryEvent);
    backupEvents.next(backupEvent);
    primaryEvents.complete();
    backupEvents.complete();
    entries.complete();
    window.complete();
  };

  const drainInbox = (): void => {
    while (state === 'open' && subscribers > 0 && inbox.length > 0) {
      const chunk = inbox.shift()!;
      let decoded: readonly LogEntry[];
      try {
        decoded = decoder.push(chunk);
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        if (err instanceof LogFrameError) for (const e of err.entries) entries.next(e);
        finish({ type: 'channel.failed', error }, { type: 'channel.failed', error });
        return;
      }
      for (const e of decoded) entries.next(e);
    }
    if (state === 'open' && closeArrived && inbox.length === 0) {
      finish({ type: 'channel.closed', by: 'local' }, { type: 'channel.closed', by: 'peer' });
    }
  };

  const deliver = (chunk: Uint8Array): void => {
    if (isCut || state !== 'open') return;
    if (corruptNext) {
      corruptNext = false;
      chunk = Uint8Array.from(chunk);
      chunk[chunk.length >> 1]! ^= 0x04;
    }
    inbox.push(chunk);
    drainInbox();
  };

  const flushOutbound = (): void => {
    outboundScheduled = false;
    if (outbound.length === 0) return;
    const parts = outbound;
    outbound = [];
    const chunk = parts.length === 1 ? parts[0]! : concatBytes(parts);
    later(latencyMs, () => deliver(chunk));
  };

  const primary: PrimaryEnd = {
    send(e: LogEntry): void {
      if (state !== 'open' || closing) return;
      const frame = window.frame(e);
      if (isCut) return;
      outbound.push(frame);
      if (!outboundScheduled) {
        outboundScheduled = true;
        queueMicrotask(flushOutbound);
      }
    },
    acked$: window.acked$,
    get ackedSeq(): number {
      return window.ackedSeq;
    },
    get lag(): Lag {
      return window.lag;
    },
    pressure$: window.pressure$,
    events$: primaryEvents.asObservable(),
    close(): void {
      if (state !== 'open' || closing) return;
      // Orderly close: what was already sent still arrives, then the backup sees the end.
      closing = true;
      queueMicrotask(() => {
        flushOutbound();
        later(latencyMs, () => {
          closeArrived = true;
          if (isCut) finish({ type: 'channel.closed', by: 'local' }, { type: 'channel.closed', by: 'peer' });
          else drainInbox();
        });
      });
    },
  };

  const backup: BackupEnd = {
    entries$: new Observable<LogEntry>((sub) => {
      const s = entries.subscribe(sub);
      subscribers++;
      queueMicrotask(drainInbox);
      return () => {
        subscribers--;
        s.unsubscribe();
      };
    }),
    ack(seq: number): void {
      if (state !== 'open' || isCut || seq <= pendingAck) return;
      pendingAck = seq;
      if (ackScheduled) return;
      ackScheduled = true;
      later(latencyMs, () => {
        ackScheduled = false;
        if (state === 'open' && !isCut) window.ack(pendingAck);
      });
    },
    events$: backupEvents.asObservable(),
    close(): void {
      finish({ type: 'channel.closed', by: 'peer' }, { type: 'channel.closed', by: 'local' });
    },
  };

  primaryEvents.next({ type: 'channel.open' });
  backupEvents.next({ type: 'channel.open' });

  return {
    primary,
    backup,
    cut(): void {
      isCut = true;
      outbound = [];
      inbox.length = 0;
    },
    corrupt(): void {
      corruptNext = true;
    },
    stats: () => window.stats(),
  };
}
