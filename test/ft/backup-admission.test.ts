// A backup over TCP is admitted by the primary's hello, and the log may follow that hello in
// the very same TCP chunk, ahead of the admission's promise. Nothing of it may be lost: the
// entries wait until the backup chart is admitted, then are applied and acknowledged.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';
import { connectBackup, TLS_CIPHERS } from '../../runtime/channel/tcp.js';
import { ControlDecoder, decodeRequest, encodeHello } from '../../runtime/channel/tcp-frames.js';
import { imageDigest } from '../../runtime/commands/common.js';
import { LiveEnv } from '../../runtime/env/live.js';
import { BackupNode } from '../../runtime/ft/backup-node.js';
import { guestPath } from '../../runtime/guests.js';
import { Encoder } from '../../runtime/log/codec.js';
import { Machine } from '../../runtime/machine.js';

const KEY = Buffer.alloc(32, 0x42);

describe('a backup admitted over TCP', () => {
  it('applies and acknowledges log entries that arrive in the hello\'s own chunk', async () => {
    const image = readFileSync(guestPath('seq'));
    const member = { instance: '', imageDigest: imageDigest(image), memoryMiB: 16 };
    const enc = new Encoder();
    const entries = Array.from({ length: 5 }, (_, seq) => enc.encode({ seq, icount: 0, type: 'progress', released: 0 }));
    let acked = -1;
    const server = tls.createServer({ ciphers: TLS_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', pskCallback: () => KEY }, (s) => {
      const control = new ControlDecoder();
      let asked = false;
      s.on('data', (chunk: Buffer) => {
        if (!asked) {
          const got = decodeRequest(chunk);
          if (!got) return;
          asked = true;
          // The hello and the first five entries leave in one write, as a busy primary's do.
          s.write(Buffer.concat([encodeHello({ ...member, instance: 'ptest-1', mode: 'boot', generation: 1, reason: '' }), ...entries]));
          chunk = chunk.subarray(got.used);
        }
        for (const f of control.push(chunk)) if (f.type === 'ack') acked = f.seq;
      });
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const machine = new Machine({ memoryMiB: 16, env: new LiveEnv() });
    machine.loadElf(image);
    const end = connectBackup({ host: '127.0.0.1', port, key: KEY, member });
    const node = new BackupNode({ name: 'backup', machine, channel: end, arbiter: new InProcessArbiter(), timing: { suspectMs: 5000, confirmMs: 5000 } });
    const run = node.run();
    const t0 = Date.now();
    while (acked < 4 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    expect(acked).toBe(4);
    expect(node.pair).toBe('ptest-1');
    expect(node.state).toBe('replaying');
    node.crash();
    await run;
    end.close();
    server.close();
  });
});
