// What a dns query costs the logging channel: the real primary node running the dns guest with
// a real disk and a real UDP forward; only the backup's end of the channel is faked. It groups
// the entries handed to it in one tick into a chunk, as the channel core frames them into one
// write, and acks each chunk a tick later, as a backup that acks on receipt.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Subject } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { ChannelEvent, Lag, PrimaryEnd } from '../../runtime/channel/channel.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { PrimaryNode } from '../../runtime/ft/primary-node.js';
import { guestPath } from '../../runtime/guests.js';
import { openIo } from '../../runtime/io/open.js';
import type { LogEntry } from '../../runtime/log/entry.js';
import { Machine } from '../../runtime/machine.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';

class ChunkingEnd implements PrimaryEnd {
  readonly chunks: LogEntry[][] = [];
  ackedSeq = -1;
  readonly lag: Lag = { entries: 0, bytes: 0 };
  private open: LogEntry[] | undefined;
  private readonly acks = new Subject<number>();
  readonly acked$ = this.acks.asObservable();
  readonly pressure$ = new Subject<boolean>().asObservable();
  readonly events$ = new Subject<ChannelEvent>().asObservable();

  send(e: LogEntry): void {
    if (!this.open) {
      const chunk: LogEntry[] = [];
      this.open = chunk;
      this.chunks.push(chunk);
      queueMicrotask(() => {
        this.open = undefined;
        setImmediate(() => {
          this.ackedSeq = Math.max(this.ackedSeq, chunk.at(-1)!.seq);
          this.acks.next(this.ackedSeq);
        });
      });
    }
    this.open.push(e);
  }

  close(): void {}
}

function query(id: number): Buffer {
  const labels = 'www.example.test'.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

describe('the primary\'s log chunks under dns queries', () => {
  it('a query\'s entries leave with its answer\'s marker: one chunk, one ack per query', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-chunks-'));
    const disk = join(dir, 'zone.img');
    copyFileSync(join(dirname(guestPath('dns')), 'zone.img'), disk);
    const io = await openIo({ disk: `file:${disk}`, net: ['udp:127.0.0.1:0:53'] });
    const port = io.udp!.boundPorts[0]!;
    const machine = new Machine({ env: new LiveEnv(), ...(io.disk ? { disk: io.disk } : {}), ...(io.net ? { net: io.net } : {}) });
    machine.loadElf(readFileSync(guestPath('dns')));
    const end = new ChunkingEnd();
    const node = new PrimaryNode({ name: 'p', pairId: 'chunks', generation: 1, machine, arbiter: new InProcessArbiter(), channel: end });
    const run = node.run();
    const client = createSocket('udp4');
    try {
      const ask = (id: number): Promise<Buffer> => new Promise((resolve) => {
        const timer = setInterval(() => client.send(query(id), port, '127.0.0.1'), 500);
        client.once('message', (m) => {
          clearInterval(timer);
          resolve(m);
        });
        client.send(query(id), port, '127.0.0.1');
      });
      // The guest reads its zone and binds port 53 first: the first answer may take a retry.
      expect((await ask(1)).readUInt16BE(0)).toBe(1);
      const before = end.chunks.length;
      const answers: number[] = [];
      for (let id = 2; id <= 21; id++) answers.push((await ask(id)).readUInt16BE(0));
      expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
      const during = end.chunks.slice(before);
      const withQuery = during.filter((c) => c.some((e) => e.type === 'net-rx'));
      // Each query's frame went out in one chunk with the marker of its answer, never alone.
      expect(withQuery.length).toBe(20);
      for (const c of withQuery) {
        expect(c.filter((e) => e.type === 'net-rx').length).toBe(1);
        expect(c.some((e) => e.type === 'output' && e.kind === 'net')).toBe(true);
      }
      // Any other chunk is a heartbeat (progress) or a digest: no chunk of inputs alone.
      for (const c of during) if (!withQuery.includes(c)) expect(c.some((e) => e.type === 'progress' || e.type === 'digest' || e.type === 'output')).toBe(true);
    } finally {
      client.close();
      node.crash('test over');
      await run;
      await machine.io?.close();
      await io.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
