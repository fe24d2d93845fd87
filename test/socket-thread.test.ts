// The backup's socket thread (runtime/channel/socket-thread.ts): the TLS socket lives in a
// worker thread; the replay thread receives log chunks from it by polling a MessagePort
// between its CPU batches, with no event-loop turn, and its acks leave through the thread.
// Everything else is the channel core's as before: the handshake's checks, a bad frame, a
// wrong key, the orderly end; and the thread ends with the channel.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RefusedError } from '../runtime/channel/channel.js';
import { connectBackupThreaded, type ThreadedBackupEnd } from '../runtime/channel/socket-thread.js';
import { listenPrimary, TLS_CIPHERS, type TcpListener } from '../runtime/channel/tcp.js';
import { decodeRequest, encodeHello } from '../runtime/channel/tcp-frames.js';
import { runOnCpuActor } from '../runtime/cpu-actor.js';
import { LiveEnv } from '../runtime/env/live.js';
import { Encoder, LogFrameError } from '../runtime/log/codec.js';
import type { LogEntry } from '../runtime/log/entry.js';
import { Machine } from '../runtime/machine.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const image = readFileSync(join(root, 'guests/bench/bench.elf'));
const KEY = Buffer.alloc(32, 0x5a);
const HOST = '127.0.0.1';
const member = { instance: '', imageDigest: 'ab'.repeat(16), memoryMiB: 16 };
const identity = { instance: 'sockthread-1', imageDigest: member.imageDigest, memoryMiB: 16 };
const marker = (seq: number): LogEntry => ({ seq, icount: 1000 * (seq + 1), type: 'output', kind: 'console', count: seq + 1 });

const exited = (end: ThreadedBackupEnd): Promise<number> => new Promise((resolve) => end.thread.once('exit', resolve));
const closed = (end: ThreadedBackupEnd): Promise<unknown> => new Promise((resolve) => end.events$.subscribe({ complete: () => resolve(undefined) }));

async function pair(key = KEY): Promise<{ l: TcpListener; b: ThreadedBackupEnd }> {
  const l = await listenPrimary({ host: HOST, port: 0, key: KEY, identity });
  const b = connectBackupThreaded({ host: HOST, port: l.port, key, member, connectTimeoutMs: 5000 });
  return { l, b };
}

describe('the backup socket thread', () => {
  it('delivers a chunk to the replay thread between chained batches, with no event-loop turn, and its ack reaches the primary', async () => {
    const { l, b } = await pair();
    const got: LogEntry[] = [];
    b.entries$.subscribe((e) => {
      got.push(e);
      b.ack(e.seq);
    });
    await Promise.all([l.end.attached, b.opened]);
    // The socket thread's loop and the primary's write are not this thread's turns: a guest
    // runs in batches chained by microtasks only, and the marker must arrive at a batch end.
    const m = new Machine({ env: new LiveEnv() });
    m.loadElf(image);
    let turned = false;
    let batches = 0;
    let doneAt = -1;
    const stop = new AbortController();
    setImmediate(() => { turned = true; });
    const t0 = performance.now();
    await runOnCpuActor(m, {
      mode: 'live',
      batch: 2000,
      schedule: (run) => queueMicrotask(run),
      signal: stop.signal,
      onBatch: () => {
        batches++;
        // The primary's TLS write leaves without a turn of this thread (libuv writes at once).
        if (batches === 1) l.end.send(marker(0));
        else if (doneAt < 0 && got.length === 1) doneAt = batches;
        // Up to 10 s of batches: the thread may wait for a core on a loaded host.
        if (doneAt >= 0 || turned || performance.now() - t0 > 10_000) stop.abort();
      },
    }).done;
    expect(turned).toBe(false);
    expect(got).toEqual([marker(0)]);
    expect(doneAt).toBeGreaterThan(1);
    // The ack went to the thread at once; the primary reads it on its next turns.
    await new Promise<void>((resolve) => l.end.acked$.subscribe((a) => { if (a === 0) resolve(); }));
    expect(l.end.ackedSeq).toBe(0);
    const gone = exited(b);
    b.close();
    await gone;
    await l.close();
  });

  it('an orderly end: every entry arrives, the chart closes by the peer, the thread exits', async () => {
    const { l, b } = await pair();
    const got: LogEntry[] = [];
    const events: string[] = [];
    b.events$.subscribe((e) => events.push(e.type === 'channel.closed' ? `closed by ${e.by}` : e.type));
    b.entries$.subscribe((e) => {
      got.push(e);
      b.ack(e.seq);
    });
    await l.end.attached;
    for (let i = 0; i < 50; i++) l.end.send(marker(i));
    l.end.send({ seq: 50, icount: 60_000, type: 'end', code: 0 });
    await new Promise<void>((resolve) => l.end.acked$.subscribe((a) => { if (a === 50) resolve(); }));
    const gone = exited(b);
    l.end.close();
    await closed(b);
    expect(got.map((e) => e.seq)).toEqual(Array.from({ length: 51 }, (_, i) => i));
    expect(events).toEqual(['channel.open', 'closed by peer']);
    expect(await gone).toBe(0);
    await l.close();
  });

  it('a wrong key is a refusal, as with the socket in the replay thread, and the thread exits', async () => {
    const { l, b } = await pair(Buffer.alloc(32, 0x11));
    const gone = exited(b);
    const err = await b.opened.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect((err as Error).message).toMatch(/refused the TLS-PSK handshake/);
    await gone;
    await l.close();
  });

  it('a corrupt frame fails the channel with the codec\'s error, the good frames before it delivered, and the thread exits', async () => {
    const enc = new Encoder();
    const good = enc.encode(marker(0));
    const bad = Buffer.from(enc.encode(marker(1)));
    bad[bad.length >> 1]! ^= 0x10;
    const server = tls.createServer({ ciphers: TLS_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', pskCallback: () => KEY }, (s) => {
      s.on('error', () => undefined);
      s.once('data', (chunk: Buffer) => {
        if (!decodeRequest(chunk)) return;
        s.write(Buffer.concat([encodeHello({ ...identity, mode: 'boot', generation: 1, reason: '' }), good, bad]));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
    const port = (server.address() as { port: number }).port;
    const b = connectBackupThreaded({ host: HOST, port, key: KEY, member });
    const gone = exited(b);
    const got: LogEntry[] = [];
    let failure: Error | undefined;
    b.entries$.subscribe((e) => got.push(e));
    b.events$.subscribe((e) => { if (e.type === 'channel.failed') failure = e.error; });
    await closed(b);
    expect(got).toEqual([marker(0)]);
    expect(failure).toBeInstanceOf(LogFrameError);
    await gone;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('no primary: the connection is retried until connectTimeoutMs, then one failure, and the thread exits', async () => {
    const l = await listenPrimary({ host: HOST, port: 0, key: KEY, identity });
    const port = l.port;
    await l.close();
    const b = connectBackupThreaded({ host: HOST, port, key: KEY, member, connectTimeoutMs: 300, retryMs: 50 });
    const gone = exited(b);
    const err = await b.opened.then(() => undefined, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/cannot connect to primary 127\.0\.0\.1:\d+/);
    await gone;
  });

  it('`ftvm backup --socket-thread` takes on or off, anything else is one ftvm: line and exit 2', () => {
    const r = spawnSync(process.execPath, [join(root, 'bin/ftvm.js'), 'backup', join(root, 'guests/seq/seq.elf'), '--connect', '127.0.0.1:1', '--key-file', '/dev/null', '--arbiter', 'file:/tmp', '--socket-thread', 'maybe'], { encoding: 'utf8', timeout: 20_000, killSignal: 'SIGKILL' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')[0]).toMatch(/^ftvm: .*--socket-thread maybe: 'on' or 'off'/);
  });
});
