// The logging channel between threads (DESIGN §4): the two ends talk over a MessagePort (a
// MessageChannel port handed to a worker, or a worker's parentPort), so the backup can replay
// on the other core while the primary runs. A thin transport under the channel core
// (core.ts), as the embedded channel is: the same codec frames (so bytes are counted and a
// corrupt frame fails the stream as it would on TCP), frames sent in one tick travel as one
// chunk, acks are coalesced and only rise, and flow control is the same. The two ends of a
// port belong to one pair built together: no handshake, both admitted at once.
//
// Wire messages are tagged with `ftlog` so the port may carry other traffic too:
//   primary -> backup: {ftlog:'data', chunk} (the chunk's buffer is transferred, not copied),
//                      {ftlog:'close'} (orderly: behind the data already posted)
//   backup -> primary: {ftlog:'ack', seq}, {ftlog:'close'}, {ftlog:'failed', message}
// A port that closes without a 'close' message (the peer's thread was terminated) is a
// transport failure, as a reset connection is on TCP.

import type { Observable } from 'rxjs';
import type { BackupEnd, ChannelStats, FlowControlOptions, PrimaryEnd } from './channel.js';
import { BackupCore, DEFAULT_HOLD_MS, later, PrimaryCore, type ChartOptions, type ChannelSnapshot } from './core.js';

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
  /** This end's chart (id, inspection, silence watchdog). */
  chart?: ChartOptions;
}

export interface PortPrimaryChannel {
  primary: PrimaryEnd & { readonly state$: Observable<ChannelSnapshot> };
  /** Fault injection: drop everything both ways from now on (a network partition). */
  cut(): void;
  /** Fault injection: flip a bit in the next chunk posted. */
  corrupt(): void;
  stats(): ChannelStats;
  /** Stop listening and, if owned, close the port; nothing more is sent or reported. */
  dispose(): void;
}

export interface PortBackupChannel {
  backup: BackupEnd & { readonly state$: Observable<ChannelSnapshot> };
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

/** The primary's end of a port channel. */
export function createPortPrimary(port: PortLike, opts: PortChannelOptions = {}): PortPrimaryChannel {
  const latencyMs = opts.latencyMs ?? 0;
  let isCut = false;
  let corruptNext = false;
  let disposed = false;

  const post = (m: Wire, transfer?: ArrayBuffer[]): void => {
    if (isCut || disposed) return;
    try {
      port.postMessage(m, transfer);
    } catch {
      // A port closed under us: the 'close' listener reports it.
    }
  };

  const core: PrimaryCore = new PrimaryCore({ ...opts, ...opts.chart, holdMs: opts.holdMs ?? DEFAULT_HOLD_MS }, {
    startHandshake: () => core.admitted(),
    write(chunk) {
      if (isCut) return;
      chunk = ownBuffer(chunk);
      if (corruptNext) {
        corruptNext = false;
        chunk[chunk.length >> 1]! ^= 0x04;
      }
      const send = (): void => post({ ftlog: 'data', chunk }, [chunk.buffer as ArrayBuffer]);
      if (latencyMs > 0) setTimeout(send, latencyMs);
      else send();
    },
    // Orderly close: the data already posted goes first, then the close, on the same port.
    end() {
      later(latencyMs, () => {
        post({ ftlog: 'close' });
        core.ended();
        dispose();
      });
    },
    abort: () => dispose(),
  });

  const onMessage = (m: unknown): void => {
    if (!isWire(m) || isCut) return;
    switch (m.ftlog) {
      case 'ack':
        core.ack(m.seq);
        break;
      case 'close':
        core.peerClosed();
        dispose();
        break;
      case 'failed':
        core.fail(new Error(`backup end failed: ${m.message}`));
        break;
      default:
        break;
    }
  };
  const onClose = (): void => {
    if (isCut) return;
    core.fail(new Error('logging port closed: the backup thread is gone'));
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
  // Once the chart ended this end (closed, failed), the port is no longer listened to.
  core.end.events$.subscribe({ complete: dispose });
  core.connected();

  return {
    primary: core.end,
    cut(): void {
      isCut = true;
    },
    corrupt(): void {
      corruptNext = true;
    },
    stats: () => core.stats(),
    dispose,
  };
}

/** The backup's end of a port channel. */
export function createPortBackup(port: PortLike, opts: PortChannelOptions = {}): PortBackupChannel {
  const latencyMs = opts.latencyMs ?? 0;
  let isCut = false;
  let disposed = false;

  const post = (m: Wire): void => {
    if (isCut || disposed) return;
    try {
      port.postMessage(m);
    } catch {
      // The port is gone; its 'close' listener reports it.
    }
  };

  const core: BackupCore = new BackupCore({ ...opts.chart, holdMs: opts.holdMs ?? DEFAULT_HOLD_MS }, {
    startHandshake: () => core.admitted(),
    writeAck(seq) {
      if (latencyMs > 0) setTimeout(() => post({ ftlog: 'ack', seq }), latencyMs);
      else post({ ftlog: 'ack', seq });
    },
    end() {
      post({ ftlog: 'close' });
      core.ended();
      dispose();
    },
    // A bad frame is an error, never a guess (DESIGN §2): both ends learn the stream broke.
    abort(error) {
      if (error) post({ ftlog: 'failed', message: error.message });
      dispose();
    },
  });

  const onMessage = (m: unknown): void => {
    if (!isWire(m) || isCut) return;
    if (m.ftlog === 'data') core.chunk(m.chunk);
    else if (m.ftlog === 'close') core.streamEnded();
  };
  const onClose = (): void => {
    if (isCut) return;
    core.fail(new Error('logging port closed: the primary thread is gone'));
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
  // Once the chart ended this end (closed, failed), the port is no longer listened to.
  core.end.events$.subscribe({ complete: dispose });
  core.connected();

  return {
    backup: core.end,
    cut(): void {
      isCut = true;
    },
    stats: () => ({ ...core.counts }),
    dispose,
  };
}
