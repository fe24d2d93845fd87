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

import { MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import type { Observable } from 'rxjs';
import { pollBetweenBatches } from '../cpu-actor.js';
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

/** Most messages one poll takes: a poll is per batch, and a flood waits for the next batch or a turn. */
const POLL_MAX = 64;

/**
 * Receive this port's waiting messages now, between two batches of this thread's CPU, without
 * an event-loop turn (`receiveMessageOnPort` takes them from the same queue the 'message'
 * listener is fed from, so the order stays the port's). Only a real MessagePort the channel
 * owns is polled: on a shared one (a worker's parentPort) a polled message would never reach
 * the port's other listeners. Returns the unregister function.
 */
function pollPort(port: PortLike, owned: boolean, onMessage: (m: unknown) => void): () => void {
  if (!owned || !(port instanceof MessagePort)) return () => undefined;
  return pollBetweenBatches(() => {
    for (let i = 0; i < POLL_MAX; i++) {
      const r = receiveMessageOnPort(port);
      if (r === undefined) return;
      onMessage(r.message);
    }
  });
}

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
  let unpoll = (): void => undefined;

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
    unpoll();
    port.off('message', onMessage);
    port.off('close', onClose);
    if (opts.ownsPort) {
      // Let what was posted (the close behind the data) leave before the port goes.
      setImmediate(() => port.close?.());
    }
  }

  port.on('message', onMessage);
  port.on('close', onClose);
  // Acks between chained batches too: the output rule's wait ends at the batch that follows the ack.
  if (!disposed) unpoll = pollPort(port, opts.ownsPort === true, onMessage);
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
  let unpoll = (): void => undefined;

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
    unpoll();
    port.off('message', onMessage);
    port.off('close', onClose);
    if (opts.ownsPort) setImmediate(() => port.close?.());
  }

  port.on('message', onMessage);
  port.on('close', onClose);
  // Entries between chained replay batches too, acked on receipt there (see pollBetweenBatches).
  if (!disposed) unpoll = pollPort(port, opts.ownsPort === true, onMessage);
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
