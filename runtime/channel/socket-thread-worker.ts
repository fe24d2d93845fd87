// The socket thread of a backup process (socket-thread.ts): owns the TLS socket to the
// primary, so that TLS decryption, the socket's reads and the acks' writes never wait for
// the replaying thread's event loop. It moves bytes only: what arrives goes to the replay
// thread as it comes, what the replay thread's channel core writes (the join request, acks,
// the goodbye) goes out at once. Decoding, the handshake's checks, acks and every decision
// stay with the channel core and the charts in the replay thread.
//
// Messages on the port (`id` numbers the dials, so a stale socket's events are known):
//   in:  {t:'dial', id}, {t:'write', id, bytes}, {t:'end', id, bytes}, {t:'destroy', id}, {t:'exit'}
//   out: {t:'secure', id, beatKey}, {t:'data', id, chunk} (its buffer transferred),
//        {t:'end', id}, {t:'error', id, code, message, reason}, {t:'close', id}

import { workerData, type MessagePort } from 'node:worker_threads';
import { dialTls, type Line } from './tcp-dial.js';
import { BEAT_KEY_BYTES, BEAT_KEY_LABEL } from './heartbeat-wire.js';

export interface SocketThreadInit {
  host: string;
  port: number;
  key: Uint8Array;
  /** The replay thread's end of the port is the other one of this pair. */
  channel: MessagePort;
}

export type ToSocketThread =
  | { t: 'dial'; id: number }
  | { t: 'write'; id: number; bytes: Uint8Array }
  | { t: 'end'; id: number; bytes: Uint8Array }
  | { t: 'destroy'; id: number }
  | { t: 'exit' };

export type FromSocketThread =
  | { t: 'secure'; id: number; beatKey: Uint8Array | undefined }
  | { t: 'data'; id: number; chunk: Uint8Array }
  | { t: 'end'; id: number }
  | { t: 'error'; id: number; code: string | undefined; message: string; reason: string | undefined }
  | { t: 'close'; id: number };

const init = workerData as SocketThreadInit;
const port = init.channel;
const dial = dialTls(init.host, init.port, Buffer.from(init.key));
const lines = new Map<number, Line>();
let exiting = false;

const post = (m: FromSocketThread, transfer?: ArrayBuffer[]): void => {
  try {
    port.postMessage(m, transfer);
  } catch {
    // The replay thread closed its end: it no longer listens.
  }
};

/** Ends the thread once no socket is left: the port closed, nothing keeps its loop alive. */
const maybeExit = (): void => {
  if (exiting && lines.size === 0) port.close();
};

port.on('message', (m: ToSocketThread) => {
  switch (m.t) {
    case 'dial': {
      const id = m.id;
      const line = dial({
        secure() {
          // The heartbeat link's key (heartbeat.ts) is exported here, where the session is.
          let beatKey: Uint8Array | undefined;
          try {
            beatKey = line.exportKey(BEAT_KEY_LABEL, BEAT_KEY_BYTES);
          } catch {
            beatKey = undefined;
          }
          post({ t: 'secure', id, beatKey });
        },
        data(chunk) {
          // A copy of exactly these bytes, whose buffer moves to the replay thread.
          const own = new Uint8Array(chunk);
          post({ t: 'data', id, chunk: own }, [own.buffer]);
        },
        end: () => post({ t: 'end', id }),
        error: (err) => post({ t: 'error', id, code: err.code, message: err.message, reason: (err as Error & { reason?: string }).reason }),
        close() {
          lines.delete(id);
          post({ t: 'close', id });
          maybeExit();
        },
      });
      lines.set(id, line);
      break;
    }
    case 'write':
      lines.get(m.id)?.write(m.bytes);
      break;
    case 'end':
      lines.get(m.id)?.end(m.bytes);
      break;
    case 'destroy':
      lines.get(m.id)?.destroy();
      break;
    case 'exit':
      exiting = true;
      maybeExit();
      break;
    default:
      break;
  }
});
