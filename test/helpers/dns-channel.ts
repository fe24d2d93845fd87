// What the dns primary tests share: a port channel end that decodes what it posts, and a query.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { createPortBackup, createPortPrimary, type PortLike } from '../../runtime/channel/port.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { guestPath } from '../../runtime/guests.js';
import { openIo } from '../../runtime/io/open.js';
import { Machine } from '../../runtime/machine.js';
import { Decoder } from '../../runtime/log/codec.js';
import type { LogEntry } from '../../runtime/log/entry.js';

/** The primary's side of a MessageChannel, decoding each chunk it posts (before the transfer detaches it). */
export function countingPort(port: MessageChannel['port1'], chunks: LogEntry[][]): PortLike {
  const decoder = new Decoder();
  return {
    postMessage(m: unknown, transfer?: readonly ArrayBuffer[]) {
      const w = m as { ftlog?: string; chunk?: Uint8Array };
      if (w.ftlog === 'data' && w.chunk) chunks.push([...decoder.push(w.chunk.slice())]);
      port.postMessage(m, transfer as ArrayBuffer[] | undefined);
    },
    on: (event: 'message' | 'close', listener: (value?: unknown) => void) => port.on(event as 'message', listener),
    off: (event: 'message' | 'close', listener: (value?: unknown) => void) => port.off(event as 'message', listener),
    close: () => port.close(),
  };
}

/** A dns query (A of www.example.test, recursion desired) with id `id`. */
export function query(id: number): Buffer {
  const labels = 'www.example.test'.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

/**
 * The dns guest on a copy of its zone disk with a UDP forward from a free port, and both ends
 * of a port channel for its primary: the primary's end decodes into `chunks` what it posts.
 */
export async function dnsOnPortChannel(prefix: string) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const disk = join(dir, 'zone.img');
  copyFileSync(join(dirname(guestPath('dns')), 'zone.img'), disk);
  const io = await openIo({ disk: `file:${disk}`, net: ['udp:127.0.0.1:0:53'] });
  const machine = new Machine({ env: new LiveEnv(), ...(io.disk ? { disk: io.disk } : {}), ...(io.net ? { net: io.net } : {}) });
  machine.loadElf(readFileSync(guestPath('dns')));
  const chunks: LogEntry[][] = [];
  const { port1, port2 } = new MessageChannel();
  const primaryEnd = createPortPrimary(countingPort(port1, chunks), { ownsPort: true });
  const backupEnd = createPortBackup(port2, { ownsPort: true });
  /** Once the node has stopped: its backends, the forward, the temp dir. */
  const dispose = async (): Promise<void> => {
    await machine.io?.close();
    await io.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { port: io.udp!.boundPorts[0]!, machine, chunks, primaryEnd, backupEnd, dispose };
}
