import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MessageChannel, type Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { filter, firstValueFrom, lastValueFrom, take, toArray, type Observable } from 'rxjs';
import { Encoder, LogFrameError } from '../runtime/log/codec.js';
import type { LogEntry } from '../runtime/log/entry.js';
import type { ChannelEvent } from '../runtime/channel/channel.js';
import { createPortBackup, createPortPrimary, type PortChannelOptions } from '../runtime/channel/port.js';
import { watchdog$ } from '../runtime/channel/watchdog.js';
import { startModuleWorker } from '../runtime/ft/remote-backup.js';

const stream = (n: number, from = 0): LogEntry[] =>
  Array.from({ length: n }, (_, i): LogEntry =>
    i % 3 === 0
      ? { seq: from + i, icount: (from + i) * 150_000, type: 'timer' }
      : i % 3 === 1
        ? { seq: from + i, icount: (from + i) * 150_000 + 7, type: 'value', kind: 'mtime', value: (from + i) * 10_000 + 3 }
        : { seq: from + i, icount: (from + i) * 150_000 + 9, type: 'net-rx', frame: new Uint8Array(i % 50).fill(i & 0xff) },
  );

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** One event-loop turn. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const markers = (n: number): LogEntry[] => Array.from({ length: n }, (_, i): LogEntry => ({ seq: i, icount: i * 1000, type: 'output', kind: 'console', count: i + 1 }));
const eventsOf = (events$: Observable<ChannelEvent>): ChannelEvent[] => {
  const seen: ChannelEvent[] = [];
  events$.subscribe((e) => seen.push(e));
  return seen;
};
const encodedSize = (entries: LogEntry[]): number => {
  const enc = new Encoder();
  return entries.reduce((n, e) => n + enc.encode(e).length, 0);
};

const opened: { close(): void }[] = [];
/** Both ends in this thread, joined by a MessageChannel (messages still cross the port machinery). */
function pair(opts: PortChannelOptions = {}, backupOpts: Pick<PortChannelOptions, 'holdMs'> = {}) {
  const { port1, port2 } = new MessageChannel();
  opened.push(port1, port2);
  // Count what crosses the wire, as a packet capture would.
  const wire = { data: 0, acks: 0 };
  port2.on('message', (m: { ftlog?: string }) => { if (m.ftlog === 'data') wire.data++; });
  port1.on('message', (m: { ftlog?: string }) => { if (m.ftlog === 'ack') wire.acks++; });
  const p = createPortPrimary(port1, { ...opts, ownsPort: true });
  const b = createPortBackup(port2, { latencyMs: opts.latencyMs ?? 0, ...backupOpts, ownsPort: true });
  return { p, b, primary: p.primary, backup: b.backup, port1, port2, wire };
}
afterAll(() => { for (const p of opened) p.close(); });

describe('port logging channel (MessagePort between threads)', () => {
  it('delivers encoded entries in order, as one message per tick, and carries coalesced acks back', async () => {
    const ch = pair();
    const sent = stream(300);
    const got = lastValueFrom(ch.backup.entries$.pipe(take(sent.length), toArray()));
    ch.backup.entries$.subscribe((e) => ch.backup.ack(e.seq));
    for (const e of sent) ch.primary.send(e);
    expect(ch.primary.lag.entries).toBe(300);
    expect(await got).toEqual(sent);
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s === 299)));
    expect(ch.primary.ackedSeq).toBe(299);
    expect(ch.primary.lag).toEqual({ entries: 0, bytes: 0, ms: 0 });
    // 300 entries sent in one tick crossed as one chunk; 300 acks in one tick as one ack.
    expect(ch.wire).toEqual({ data: 1, acks: 1 });
    expect(ch.p.stats()).toEqual({ bytesSent: encodedSize(sent), entriesSent: 300 });
    expect(ch.b.stats()).toEqual({ bytesReceived: encodedSize(sent), entriesReceived: 300 });
  });

  it('sends output markers of separate ticks as separate chunks, each in its tick', async () => {
    // A hold far beyond the test's timeout: a marker that waited for it would never arrive.
    const ch = pair({ holdMs: 60_000 });
    const sent = markers(3);
    for (const e of sent) {
      const arrived = firstValueFrom(ch.backup.entries$.pipe(filter((x) => x.seq === e.seq)));
      ch.primary.send(e);
      expect(await arrived).toEqual(e);
    }
    expect(ch.wire.data).toBe(3);
  });

  it('holds entries nobody waits for up to holdMs, then sends those of several ticks as one chunk', async () => {
    const ch = pair({ holdMs: 40 });
    const sent = stream(6);
    const got = lastValueFrom(ch.backup.entries$.pipe(take(6), toArray()));
    const t0 = performance.now();
    for (const e of sent) {
      ch.primary.send(e);
      await tick();
    }
    expect(ch.wire.data).toBe(0);
    expect(await got).toEqual(sent);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(35);
    expect(ch.wire.data).toBe(1);
  });

  it('sends an output marker in its tick, with every entry held before it, as one chunk', async () => {
    const ch = pair({ holdMs: 60_000 });
    const held = stream(5);
    const marker: LogEntry = { seq: 5, icount: 5 * 150_000, type: 'output', kind: 'console', count: 1 };
    const got = lastValueFrom(ch.backup.entries$.pipe(take(6), toArray()));
    for (const e of held) {
      ch.primary.send(e);
      await tick();
    }
    await sleep(20);
    expect(ch.wire.data).toBe(0);
    ch.primary.send(marker);
    expect(await got).toEqual([...held, marker]);
    expect(ch.wire.data).toBe(1);
  });

  it('holds an ack that covers no awaited entry; an ack that covers a marker leaves in its tick and takes it along', async () => {
    const ch = pair({ holdMs: 0 }, { holdMs: 60_000 });
    ch.backup.entries$.subscribe((e) => ch.backup.ack(e.seq));
    const inputs = stream(4);
    for (const e of inputs) ch.primary.send(e);
    await firstValueFrom(ch.backup.entries$.pipe(filter((e) => e.seq === 3)));
    await sleep(30);
    expect(ch.primary.ackedSeq).toBe(-1);
    expect(ch.wire.acks).toBe(0);
    ch.primary.send({ seq: 4, icount: 4 * 150_000, type: 'output', kind: 'net', count: 1 });
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s === 4)));
    expect(ch.wire.acks).toBe(1);
    // Held again, until the backup closes: its close takes the held ack along.
    ch.primary.send({ seq: 5, icount: 5 * 150_000, type: 'timer' });
    await firstValueFrom(ch.backup.entries$.pipe(filter((e) => e.seq === 5)));
    await sleep(30);
    expect(ch.primary.ackedSeq).toBe(4);
    const closed = lastValueFrom(ch.primary.events$);
    ch.backup.close();
    expect(await closed).toEqual({ type: 'channel.closed', by: 'peer' });
    expect(ch.primary.ackedSeq).toBe(5);
    expect(ch.wire.acks).toBe(2);
  });

  it('fails both ends on a corrupt byte in a chunk of held entries and a marker, after delivering the good frames', async () => {
    const ch = pair({ holdMs: 60_000 });
    const primaryEvents = eventsOf(ch.primary.events$);
    const done = lastValueFrom(ch.backup.entries$.pipe(toArray()));
    // 40 held entries, then a marker: one chunk of 41 frames; the flipped bit lands in its middle.
    const held = stream(40);
    for (const e of held) ch.primary.send(e);
    await tick();
    ch.p.corrupt();
    ch.primary.send({ seq: 40, icount: 40 * 150_000, type: 'output', kind: 'console', count: 1 });
    const got = await done;
    expect(ch.wire.data).toBe(1);
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThan(40);
    expect(got).toEqual(held.slice(0, got.length));
    const last = await lastValueFrom(ch.backup.events$.pipe(filter((e) => e.type !== 'channel.open')), { defaultValue: undefined });
    expect(last?.type).toBe('channel.failed');
    await lastValueFrom(ch.primary.events$);
    expect(primaryEvents.map((e) => e.type)).toEqual(['channel.open', 'channel.failed']);
  });

  it('keeps entries for a backup that subscribes late', async () => {
    const ch = pair();
    const sent = stream(10);
    for (const e of sent) ch.primary.send(e);
    await sleep(10);
    expect(await lastValueFrom(ch.backup.entries$.pipe(take(10), toArray()))).toEqual(sent);
  });

  it('acked$ only rises, and lag counts what is unacked', async () => {
    const ch = pair();
    const seen: number[] = [];
    ch.primary.acked$.subscribe((s) => seen.push(s));
    for (const e of stream(10)) ch.primary.send(e);
    await firstValueFrom(ch.backup.entries$.pipe(take(10), toArray()));
    ch.backup.ack(4);
    ch.backup.ack(2);
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s >= 4)));
    expect(ch.primary.lag.entries).toBe(5);
    ch.backup.ack(3);
    ch.backup.ack(9);
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s >= 9)));
    expect(seen).toEqual([-1, 4, 9]);
    expect(ch.primary.lag.entries).toBe(0);
  });

  it('raises pressure above the high-water mark and drops it below the low one', async () => {
    const ch = pair({ highWaterBytes: 1000, lowWaterBytes: 200 });
    const seen: boolean[] = [];
    ch.primary.pressure$.subscribe((p) => seen.push(p));
    for (const e of stream(120)) ch.primary.send(e);
    expect(ch.primary.lag.bytes).toBeGreaterThan(1000);
    await firstValueFrom(ch.backup.entries$.pipe(take(120), toArray()));
    ch.backup.ack(60);
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s === 60)));
    expect(ch.primary.lag.bytes).toBeGreaterThan(200);
    expect(seen).toEqual([false, true]);
    ch.backup.ack(119);
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s === 119)));
    expect(seen).toEqual([false, true, false]);
  });

  it('delays entries and acks by latencyMs each way', async () => {
    const ch = pair({ latencyMs: 40 });
    const t0 = performance.now();
    const first = firstValueFrom(ch.backup.entries$);
    ch.primary.send(stream(1)[0]!);
    await first;
    const oneWay = performance.now() - t0;
    ch.backup.ack(0);
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s === 0)));
    expect(oneWay).toBeGreaterThanOrEqual(35);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(75);
  });

  it('goes silent when cut: nothing arrives, no acks return, lag grows, the watchdog fires', async () => {
    const ch = pair();
    const got: LogEntry[] = [];
    ch.backup.entries$.subscribe((e) => {
      got.push(e);
      ch.backup.ack(e.seq);
    });
    const status = firstValueFrom(watchdog$(ch.backup.entries$, 30));
    const sent = stream(20);
    for (const e of sent.slice(0, 10)) ch.primary.send(e);
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s === 9)));
    ch.p.cut();
    for (const e of sent.slice(10)) ch.primary.send(e);
    expect(await status).toBe('peer.silent');
    expect(got).toEqual(sent.slice(0, 10));
    expect(ch.primary.ackedSeq).toBe(9);
    expect(ch.primary.lag.entries).toBe(10);
    expect(ch.wire.data).toBe(1);
  });

  it('turns a corrupt frame into channel.failed on both ends and completes entries$', async () => {
    const ch = pair();
    const primaryEvents = eventsOf(ch.primary.events$);
    const backupEvents = eventsOf(ch.backup.events$);
    const done = lastValueFrom(ch.backup.entries$.pipe(toArray()));
    const sent = stream(5);
    ch.primary.send(sent[0]!);
    await sleep(5);
    ch.p.corrupt();
    ch.primary.send(sent[1]!);
    await sleep(5);
    for (const e of sent.slice(2)) ch.primary.send(e);
    expect(await done).toEqual(sent.slice(0, 1));
    await lastValueFrom(ch.primary.events$);
    expect(backupEvents.map((e) => e.type)).toEqual(['channel.open', 'channel.failed']);
    expect(primaryEvents.map((e) => e.type)).toEqual(['channel.open', 'channel.failed']);
    expect((backupEvents[1] as Extract<ChannelEvent, { type: 'channel.failed' }>).error).toBeInstanceOf(LogFrameError);
    expect((primaryEvents[1] as Extract<ChannelEvent, { type: 'channel.failed' }>).error.message).toMatch(/crc|frame/);
  });

  it('closes in order: entries already sent arrive, then both ends see channel.closed', async () => {
    const ch = pair({ latencyMs: 5 });
    const primaryEvents = eventsOf(ch.primary.events$);
    const done = lastValueFrom(ch.backup.entries$.pipe(toArray()));
    const sent = stream(8);
    for (const e of sent) ch.primary.send(e);
    ch.primary.close();
    ch.primary.send({ seq: 8, icount: 8 * 150_000, type: 'progress', released: 0 });
    expect(await done).toEqual(sent);
    expect(await lastValueFrom(ch.backup.events$)).toEqual({ type: 'channel.closed', by: 'peer' });
    expect(primaryEvents).toEqual([{ type: 'channel.open' }, { type: 'channel.closed', by: 'local' }]);
  });

  it('lets the backup close the channel', async () => {
    const ch = pair();
    const last = lastValueFrom(ch.primary.events$);
    ch.backup.close();
    expect(await last).toEqual({ type: 'channel.closed', by: 'peer' });
  });

  it('reports a port that closes under it (the peer thread died) as channel.failed', async () => {
    const ch = pair();
    const last = lastValueFrom(ch.primary.events$);
    ch.port2.close();
    const e = await last;
    expect(e.type).toBe('channel.failed');
  });

  it('ignores other traffic on a shared port', async () => {
    const { port1, port2 } = new MessageChannel();
    opened.push(port1, port2);
    const p = createPortPrimary(port1);
    const b = createPortBackup(port2);
    const got = lastValueFrom(b.backup.entries$.pipe(take(3), toArray()));
    port1.postMessage({ hello: 'not a log message' });
    port1.postMessage({ ftlog: 42 });
    for (const e of stream(3)) p.primary.send(e);
    expect(await got).toEqual(stream(3));
    p.dispose();
    b.dispose();
  });

  it('delivers any stream in order under random ack patterns', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 200 }), fc.nat(1000), fc.array(fc.nat(), { maxLength: 20 }), async (n, from, acks) => {
        const ch = pair();
        const sent = stream(n, from);
        const got = lastValueFrom(ch.backup.entries$.pipe(take(n), toArray()));
        for (const e of sent) ch.primary.send(e);
        expect(await got).toEqual(sent);
        for (const a of acks) ch.backup.ack(from + (a % n));
        const top = acks.length ? Math.max(...acks.map((a) => from + (a % n))) : -1;
        if (top >= 0) await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s >= top)));
        await sleep(1);
        expect(ch.primary.ackedSeq).toBe(top);
        expect(ch.primary.lag.entries).toBe(acks.length ? from + n - 1 - top : n);
        ch.p.dispose();
        ch.b.dispose();
      }),
      { numRuns: 30 },
    );
  });
});

describe('port logging channel across a real worker thread', () => {
  // A backup end in a worker that acks every entry and echoes it back, over the worker's
  // parentPort (shared with the echo traffic), or over a port handed to it.
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-port-'));
  const echo = join(dir, 'echo-worker.ts');
  writeFileSync(
    echo,
    `import { parentPort, workerData } from 'node:worker_threads';
import { createPortBackup } from ${JSON.stringify(new URL('../runtime/channel/port.js', import.meta.url).href)};
const port = workerData?.port ?? parentPort;
const { backup } = createPortBackup(port);
backup.entries$.subscribe((e) => { backup.ack(e.seq); parentPort.postMessage({ echo: e }); });
backup.events$.subscribe((e) => parentPort.postMessage({ event: e.type }));
`,
  );
  const workers: Worker[] = [];
  afterAll(async () => { await Promise.all(workers.map((w) => w.terminate())); });
  const spawn = (workerData?: { port: unknown }, transferList?: never[]): Worker => {
    const w = startModuleWorker(pathToFileURL(echo), workerData ? { workerData, transferList: transferList ?? [] } : {});
    workers.push(w);
    return w;
  };
  const echoes = (w: Worker, n: number): Promise<LogEntry[]> =>
    new Promise((resolve) => {
      const got: LogEntry[] = [];
      w.on('message', (m: { echo?: LogEntry }) => {
        if (m.echo && got.push(m.echo) === n) resolve(got);
      });
    });

  it('carries the log to a worker over its parentPort and the acks back', async () => {
    const w = spawn();
    const ch = createPortPrimary(w);
    const sent = stream(500);
    const back = echoes(w, sent.length);
    for (const e of sent.slice(0, 250)) ch.primary.send(e);
    await sleep(2);
    for (const e of sent.slice(250)) ch.primary.send(e);
    expect(await back).toEqual(sent);
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s === 499)));
    expect(ch.primary.lag).toEqual({ entries: 0, bytes: 0, ms: 0 });
    expect(ch.stats()).toEqual({ bytesSent: encodedSize(sent), entriesSent: 500 });
    ch.dispose();
  });

  it('fails the primary end when the worker holding the backup end is terminated', async () => {
    const { port1, port2 } = new MessageChannel();
    const w = spawn({ port: port2 }, [port2 as never]);
    const ch = createPortPrimary(port1, { ownsPort: true });
    const back = echoes(w, 10);
    for (const e of stream(10)) ch.primary.send(e);
    await back;
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s === 9)));
    const last = lastValueFrom(ch.primary.events$);
    await w.terminate();
    const e = await last;
    expect(e.type).toBe('channel.failed');
    expect((e as Extract<ChannelEvent, { type: 'channel.failed' }>).error.message).toMatch(/backup thread is gone/);
  });
});
