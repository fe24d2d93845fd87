// The logging channel between threads (DESIGN §4): the two ends talk over a MessagePort (a
// MessageChannel port handed to a worker, or a worker's parentPort), so the backup can replay
// on the other core while the primary runs. It behaves as the embedded channel does
// (in-process.ts): the same codec frames (so bytes are counted and a corrupt frame fails the
// stream as it would on TCP), frames sent in one tick travel as one chunk, acks are coalesced
// and only rise, and flow control is the same SendWindow.
//
// Wire messages are tagged with `ftlog` so the port may carry other traffic too:
//   primary -> backup: {ftlog:'data', chunk} (the chunk's buffer is transferred, not copied),
//                      {ftlog:'close'} (orderly: behind the data already posted)
//   backup -> primary: {ftlog:'ack', seq}, {ftlog:'close'}, {ftlog:'failed', message}
// A port that closes without a 'close' message (the peer's thread was terminated) is a
// transport failure, as a reset connection is on TCP.

import { Observable, ReplaySubject, Subject } from 'rxjs';
import { Decoder, LogFrameError } from '../log/codec.js';
import type { LogEntry } from '../log/entry.js';
import type { BackupEnd, ChannelEvent, ChannelStats, FlowControlOptions, Lag, PrimaryEnd } from './channel.js';
import { SendWindow } from './send-window.js';
import { concatBytes } from './bytes.js';

/** What the channel needs of a port: node:worker_threads' MessagePort and parentPort fit. */
export interface PortLike {
  postMessage(value: unknown, transferList?: readonly ArrayBuffer[]): void;
  on(event: 'message', listener: (value: unknown) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  off(event: 'message', listener: (value: unknown) => void): unknown;
  off(event: 'close', listener: () => void): unknown;
  close?(): void;
}

export interface PortChannelOptions extends FlowControlOptions {
  /** One-way delay added to entries (primary end) or acks (backup end), for fault tests. */
  latencyMs?: number;
  /**
   * The channel owns the port: it closes it once the stream is over. Leave false for a port
   * that carries other traffic too (a worker's parentPort).
   */
  ownsPort?: boolean;
}

export interface PortPrimaryChannel {
  primary: PrimaryEnd;
  /** Fault injection: drop everything both ways from now on (a network partition). */
  cut(): void;
  /** Fault injection: flip a bit in the next chunk posted. */
  corrupt(): void;
  stats(): ChannelStats;
  /** Stop listening and, if owned, close the port; nothing more is sent or reported. */
  dispose(): void;
}

export interface PortBackupChannel {
  backup: BackupEnd;
  /** Fault injection on this side: drop everything both ways from now on. */
  cut(): void;
  stats(): { bytesReceived: number; entriesReceived: number };
  dispose(): void;
}

type Wire =
  | { ftlog: 'data'; chunk: Uint8Array }
  | { ftlog: 'close' }
  | { ftlog: 'ack'; seq: number }
  | { ftlog: 'failed'; message: string };

const isWire = (m: unknown): m is Wire => typeof m === 'object' && m !== null && typeof (m as { ftlog?: unknown }).ftlog === 'string';


/** A chunk whose buffer is exactly its bytes, so transferring the buffer moves nothing else. */
const ownBuffer = (b: Uint8Array): Uint8Array =>
  b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer ? b : b.slice();

const later = (ms: number, fn: () => void): void => {
  if (ms <= 0) queueMicrotask(fn);
  else setTimeout(fn, ms);
};

/** The primary's end of a port channel. */
export function createPortPrimary(port: PortLike, opts: PortChannelOptions = {}): PortPrimaryChannel {
  const latencyMs = opts.latencyMs ?? 0;
  const window = new SendWindow(opts);
  const events = new ReplaySubject<ChannelEvent>();
  let state: 'open' | 'closing' | 'done' = 'open';
  let isCut = false;
  let corruptNext = false;
  let disposed = false;
  // Frames sent in the same tick travel as one chunk: one postMessage per batch of the guest.
  let outbound: Uint8Array[] = [];
  let flushScheduled = false;

  const post = (m: Wire, transfer?: ArrayBuffer[]): void => {
    if (isCut || disposed) return;
    try {
      port.postMessage(m, transfer);
    } catch {
      // A port closed under us: the 'close' listener reports it.
    }
  };

  const finish = (e: ChannelEvent): void => {
    if (state === 'done') return;
    state = 'done';
    outbound = [];
    events.next(e);
    events.complete();
    window.complete();
    dispose();
  };

  const flush = (): void => {
    flushScheduled = false;
    if (outbound.length === 0 || isCut) {
      outbound = [];
      return;
    }
    let chunk = outbound.length === 1 ? ownBuffer(outbound[0]!) : concatBytes(outbound);
    outbound = [];
    if (corruptNext) {
      corruptNext = false;
      chunk = Uint8Array.from(chunk);
      chunk[chunk.length >> 1]! ^= 0x04;
    }
    const send = (): void => post({ ftlog: 'data', chunk }, [chunk.buffer as ArrayBuffer]);
    if (latencyMs > 0) setTimeout(send, latencyMs);
    else send();
  };

  const onMessage = (m: unknown): void => {
    if (!isWire(m) || isCut || state === 'done') return;
    switch (m.ftlog) {
      case 'ack':
        window.ack(m.seq);
        break;
      case 'close':
        finish({ type: 'channel.closed', by: 'peer' });
        break;
      case 'failed':
        finish({ type: 'channel.failed', error: new Error(`backup end failed: ${m.message}`) });
        break;
      default:
        break;
    }
  };
  const onClose = (): void => {
    if (isCut || state === 'done') return;
    finish({ type: 'channel.failed', error: new Error('logging port closed: the backup thread is gone') });
  };

  function dispose(): void {
    if (disposed) return;
    disposed = true;
    port.off('message', onMessage);
    port.off('close', onClose);
    if (opts.ownsPort) {
      // Let what was posted (the close behind the data) leave before the port goes.
      setImmediate(() => port.close?.());
    }
  }

  port.on('message', onMessage);
  port.on('close', onClose);
  events.next({ type: 'channel.open' });

  const primary: PrimaryEnd = {
    send(e: LogEntry): void {
      if (state !== 'open') return;
      const frame = window.frame(e);
      if (isCut) return;
      outbound.push(frame);
      if (!flushScheduled) {
        flushScheduled = true;
        queueMicrotask(flush);
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
    events$: events.asObservable(),
    close(): void {
      if (state !== 'open') return;
      // Orderly close: the data already sent goes first, then the close, on the same port.
      state = 'closing';
      queueMicrotask(() => {
        flush();
        later(latencyMs, () => {
          post({ ftlog: 'close' });
          finish({ type: 'channel.closed', by: 'local' });
        });
      });
    },
  };

  return {
    primary,
    cut(): void {
      isCut = true;
      outbound = [];
    },
    corrupt(): void {
      corruptNext = true;
    },
    stats: () => window.stats(),
    dispose,
  };
}

/** The backup's end of a port channel. */
export function createPortBackup(port: PortLike, opts: PortChannelOptions = {}): PortBackupChannel {
  const latencyMs = opts.latencyMs ?? 0;
  const decoder = new Decoder();
  const events = new ReplaySubject<ChannelEvent>();
  const entries = new Subject<LogEntry>();
  const stats = { bytesReceived: 0, entriesReceived: 0 };
  let state: 'open' | 'done' = 'open';
  let isCut = false;
  let disposed = false;
  // Chunks that arrived before the backup subscribed wait here, as in a socket buffer.
  const inbox: Uint8Array[] = [];
  let closeArrived = false;
  let subscribers = 0;
  let pendingAck = -1;
  let ackScheduled = false;

  const post = (m: Wire): void => {
    if (isCut || disposed) return;
    try {
      port.postMessage(m);
    } catch {
      // The port is gone; its 'close' listener reports it.
    }
  };

  const finish = (e: ChannelEvent): void => {
    if (state === 'done') return;
    state = 'done';
    inbox.length = 0;
    events.next(e);
    events.complete();
    entries.complete();
    dispose();
  };

  const drain = (): void => {
    while (state === 'open' && subscribers > 0 && inbox.length > 0) {
      const chunk = inbox.shift()!;
      let decoded: readonly LogEntry[];
      try {
        decoded = decoder.push(chunk);
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        if (err instanceof LogFrameError) for (const e of err.entries) entries.next(e);
        // A bad frame is an error, never a guess (DESIGN §2): both ends learn the stream broke.
        post({ ftlog: 'failed', message: error.message });
        finish({ type: 'channel.failed', error });
        return;
      }
      stats.entriesReceived += decoded.length;
      for (const e of decoded) entries.next(e);
    }
    if (state === 'open' && closeArrived && inbox.length === 0) finish({ type: 'channel.closed', by: 'peer' });
  };

  const onMessage = (m: unknown): void => {
    if (!isWire(m) || isCut || state === 'done') return;
    if (m.ftlog === 'data') {
      stats.bytesReceived += m.chunk.length;
      inbox.push(m.chunk);
      drain();
    } else if (m.ftlog === 'close') {
      closeArrived = true;
      drain();
    }
  };
  const onClose = (): void => {
    if (isCut || state === 'done') return;
    finish({ type: 'channel.failed', error: new Error('logging port closed: the primary thread is gone') });
  };

  function dispose(): void {
    if (disposed) return;
    disposed = true;
    port.off('message', onMessage);
    port.off('close', onClose);
    if (opts.ownsPort) setImmediate(() => port.close?.());
  }

  port.on('message', onMessage);
  port.on('close', onClose);
  events.next({ type: 'channel.open' });

  const backup: BackupEnd = {
    entries$: new Observable<LogEntry>((sub) => {
      const s = entries.subscribe(sub);
      subscribers++;
      queueMicrotask(drain);
      return () => {
        subscribers--;
        s.unsubscribe();
      };
    }),
    ack(seq: number): void {
      if (state !== 'open' || isCut || seq <= pendingAck) return;
      pendingAck = seq;
      if (ackScheduled) return;
      // One ack message for everything acknowledged in this tick (one per chunk received).
      ackScheduled = true;
      later(latencyMs, () => {
        ackScheduled = false;
        if (state === 'open') post({ ftlog: 'ack', seq: pendingAck });
      });
    },
    events$: events.asObservable(),
    close(): void {
      if (state !== 'open') return;
      post({ ftlog: 'close' });
      finish({ type: 'channel.closed', by: 'local' });
    },
  };

  return {
    backup,
    cut(): void {
      isCut = true;
      inbox.length = 0;
    },
    stats: () => ({ ...stats }),
    dispose,
  };
}
