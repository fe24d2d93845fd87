// The backup process's socket thread (issue 14): the TLS socket to the primary lives in a
// worker thread of the backup process (socket-thread-worker.ts), and the replay thread talks
// to it over a MessagePort that it also polls between its CPU batches (`pollBetweenBatches`,
// as the in-process worker backup polls its log port). A TLS socket cannot be read without an
// event-loop turn; a MessagePort can (`receiveMessageOnPort`). So the replaying thread learns
// of arriving log chunks at the end of every ~40 µs replay slice and acks them there, without
// a turn per slice; it chains its slices for a millisecond (`SOCKET_THREAD_CHAIN_MS`) and
// turns only for its timers and the rest.
//
// Only the socket moves. The channel core (core.ts) and its chart, the handshake's checks,
// the decoding (a bad frame is one 'channel.failed'), the acks and the backup chart that
// decides each of them stay in the replay thread, exactly as with the socket in that thread
// (tcp.ts `connectBackup`, given this dial): an ack still covers only entries the core
// decoded intact and the backup chart took (DESIGN §3 output rule), and none once the
// arbiter is won. The thread is the process's: kill -9 ends both; once the channel ends
// (closed, failed, go-live) the thread closes its socket and exits, and is terminated if it
// has not within `EXIT_GRACE_MS`.

import { MessageChannel, MessagePort, receiveMessageOnPort, type Worker } from 'node:worker_threads';
import { pollBetweenBatches } from '../cpu-actor.js';
import { startModuleWorker } from '../ft/remote-backup.js';
import { connectBackup, type TcpBackupEnd, type TcpBackupOptions } from './tcp.js';
import type { Dial, Line, LineEvents } from './tcp-dial.js';
import { BEAT_KEY_BYTES, BEAT_KEY_LABEL } from './heartbeat-wire.js';
import type { FromSocketThread, SocketThreadInit, ToSocketThread } from './socket-thread-worker.js';

/** A backup on a socket thread chains its replay slices for this long between turns (ms). */
export const SOCKET_THREAD_CHAIN_MS = 1;
/** Most messages one poll takes (a poll is per batch; a flood waits for the next one). */
const POLL_MAX = 64;
/** The thread gets this long to say goodbye and close its socket once the channel ended. */
const EXIT_GRACE_MS = 2000;

const workerEntry = (): URL => new URL(import.meta.url.endsWith('.ts') ? './socket-thread-worker.ts' : './socket-thread-worker.js', import.meta.url);

export interface ThreadedBackupEnd extends TcpBackupEnd {
  /** The socket thread (tests watch it exit). */
  readonly thread: Worker;
}

/**
 * `connectBackup` with the socket in a thread of its own. Same options, same end, same
 * failures; the thread is started here and ends with the channel.
 */
export function connectBackupThreaded(opts: TcpBackupOptions): ThreadedBackupEnd {
  const { port1: port, port2 } = new MessageChannel();
  const init: SocketThreadInit = { host: opts.host, port: opts.port, key: Uint8Array.from(opts.key), channel: port2 };
  const thread = startModuleWorker(workerEntry(), { workerData: init, transferList: [port2], name: 'ftvm socket' });
  const lines = new Map<number, { events: LineEvents; beatKey: Buffer | undefined }>();
  let nextId = 0;
  let over = false;

  const send = (m: ToSocketThread): void => {
    if (over && m.t !== 'exit' && m.t !== 'destroy' && m.t !== 'end') return;
    try {
      port.postMessage(m);
    } catch {
      // The thread is gone; its 'exit' is reported below.
    }
  };

  const onMessage = (m: FromSocketThread): void => {
    const line = lines.get(m.id);
    if (!line) return;
    switch (m.t) {
      case 'secure':
        line.beatKey = m.beatKey ? Buffer.from(m.beatKey) : undefined;
        line.events.secure();
        break;
      case 'data':
        line.events.data(m.chunk);
        break;
      case 'end':
        line.events.end();
        break;
      case 'error':
        line.events.error(Object.assign(new Error(m.message), { code: m.code, reason: m.reason }));
        break;
      case 'close':
        lines.delete(m.id);
        line.events.close();
        break;
      default:
        break;
    }
  };
  port.on('message', onMessage);
  // Between the replay thread's batches too: arrivals are delivered, and acked, with no turn.
  const unpoll = pollBetweenBatches(() => {
    for (let i = 0; i < POLL_MAX; i++) {
      const r = receiveMessageOnPort(port as MessagePort);
      if (r === undefined) return;
      onMessage(r.message as FromSocketThread);
    }
  });

  // A thread that dies is a socket that broke: the open line fails as on a reset.
  const threadGone = (why: string): void => {
    for (const [id, line] of [...lines]) {
      lines.delete(id);
      line.events.error(Object.assign(new Error(`socket thread: ${why}`), { code: 'ECONNABORTED' }));
      line.events.close();
    }
  };
  thread.on('error', (err) => threadGone(err.message));
  thread.on('exit', (code) => {
    if (!over) threadGone(`exited (code ${code})`);
    shutdown();
  });

  const dial: Dial = (events) => {
    const id = nextId++;
    lines.set(id, { events, beatKey: undefined });
    send({ t: 'dial', id });
    const line: Line = {
      write: (bytes) => send({ t: 'write', id, bytes }),
      end: (last) => send({ t: 'end', id, bytes: last }),
      destroy: () => send({ t: 'destroy', id }),
      exportKey: (label, bytes) => (label === BEAT_KEY_LABEL && bytes === BEAT_KEY_BYTES ? lines.get(id)?.beatKey : undefined),
    };
    return line;
  };

  function shutdown(): void {
    unpoll();
    port.off('message', onMessage);
    port.close();
  }

  const end = connectBackup(opts, dial);
  // Once the channel is over (closed in order, failed, refused), the thread closes its
  // socket (the goodbye already queued leaves first) and exits; it is not waited for past the grace.
  end.events$.subscribe({
    complete: () => {
      over = true;
      send({ t: 'exit' });
      setTimeout(() => void thread.terminate(), EXIT_GRACE_MS).unref();
    },
  });
  return Object.assign(Object.create(end) as TcpBackupEnd, { thread }) as ThreadedBackupEnd;
}
