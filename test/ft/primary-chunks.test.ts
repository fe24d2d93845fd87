// What a dns query costs the logging channel: the real primary node running the dns guest with
// a real disk and a real UDP forward, logging over a real port channel (a MessageChannel in
// this thread, as a worker pair's) to its real backup end, whose consumer acks each entry on
// receipt as the backup node does. Each chunk the primary end posts is one `postMessage` (one
// TLS record and write(2) on TCP): the test decodes every posted chunk to see what travels
// together.
import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { dnsOnPortChannel, query } from '../helpers/dns-channel.js';
import { PrimaryNode } from '../../runtime/ft/primary-node.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';

describe('the primary\'s log chunks under dns queries, over a real port channel', () => {
  it('a query\'s entries leave with its answer\'s marker: one posted chunk per query', async () => {
    const { port, machine, chunks, primaryEnd, backupEnd, dispose } = await dnsOnPortChannel('ftvm-chunks-');
    let received = 0;
    const acking = backupEnd.backup.entries$.subscribe((e) => {
      received++;
      backupEnd.backup.ack(e.seq);
    });
    const node = new PrimaryNode({ name: 'p', pairId: 'chunks', generation: 1, machine, arbiter: new InProcessArbiter(), channel: primaryEnd.primary });
    const run = node.run();
    const client = createSocket('udp4');
    try {
      const ask = (id: number): Promise<Buffer> => new Promise((resolve) => {
        const timer = setInterval(() => client.send(query(id), port, '127.0.0.1'), 500);
        // A late second answer to a retried query is not this query's.
        const onMessage = (m: Buffer): void => {
          if (m.readUInt16BE(0) !== id) return;
          clearInterval(timer);
          client.off('message', onMessage);
          resolve(m);
        };
        client.on('message', onMessage);
        client.send(query(id), port, '127.0.0.1');
      });
      // The guest reads its zone and binds port 53 first: the first answer may take a retry.
      expect((await ask(1)).readUInt16BE(0)).toBe(1);
      const before = chunks.length;
      const answers: number[] = [];
      for (let id = 2; id <= 21; id++) answers.push((await ask(id)).readUInt16BE(0));
      expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
      const during = chunks.slice(before);
      const withQuery = during.filter((c) => c.some((e) => e.type === 'net-rx'));
      // Each query's frame went out in one chunk with the marker of its answer. The holds are
      // bounded in time (1 ms: bounded lag), so on a loaded host a guest descheduled between a
      // query and its answer lets a frame leave first, alone; on a calm one none does.
      expect(withQuery.length).toBe(20);
      for (const c of withQuery) expect(c.filter((e) => e.type === 'net-rx').length).toBe(1);
      const withAnswer = withQuery.filter((c) => c.some((e) => e.type === 'output' && e.kind === 'net'));
      expect(withAnswer.length).toBeGreaterThanOrEqual(16);
      // Any other chunk is a heartbeat (progress) or a digest: no chunk of inputs alone.
      for (const c of during) if (!withQuery.includes(c)) expect(c.some((e) => e.type === 'progress' || e.type === 'digest' || e.type === 'output')).toBe(true);
      // The backup end received every entry posted, and acked them: the answers were released.
      expect(received).toBe(chunks.flat().length);
    } finally {
      client.close();
      acking.unsubscribe();
      node.crash('test over');
      await run;
      await dispose();
    }
  }, 30_000);
});
