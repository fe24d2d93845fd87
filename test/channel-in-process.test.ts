import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { filter, firstValueFrom, lastValueFrom, map, take, toArray } from 'rxjs';
import { Encoder, LogFrameError } from '../runtime/log/codec.js';
import type { LogEntry } from '../runtime/log/entry.js';
import type { ChannelEvent } from '../runtime/channel/channel.js';
import { createInProcessChannel } from '../runtime/channel/in-process.js';
import { watchdog$ } from '../runtime/channel/watchdog.js';

const stream = (n: number, from = 0): LogEntry[] =>
  Array.from({ length: n }, (_, i): LogEntry =>
    i % 3 === 0
      ? { seq: from + i, icount: (from + i) * 150_000, type: 'timer' }
      : i % 3 === 1
        ? { seq: from + i, icount: (from + i) * 150_000 + 7, type: 'value', kind: 'mtime', value: (from + i) * 10_000 + 3 }
        : { seq: from + i, icount: (from + i) * 150_000 + 9, type: 'net-rx', frame: new Uint8Array(i % 50).fill(i & 0xff) },
  );

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const eventsOf = (events$: import('rxjs').Observable<ChannelEvent>): ChannelEvent[] => {
  const seen: ChannelEvent[] = [];
  events$.subscribe((e) => seen.push(e));
  return seen;
};

describe('in-process logging channel', () => {
  it('delivers encoded entries in order and carries acks back', async () => {
    const ch = createInProcessChannel();
    const sent = stream(300);
    const got = lastValueFrom(ch.backup.entries$.pipe(take(sent.length), toArray()));
    ch.backup.entries$.subscribe((e) => ch.backup.ack(e.seq));
    for (const e of sent) ch.primary.send(e);
    expect(ch.primary.lag.entries).toBe(300);
    expect(await got).toEqual(sent);
    await firstValueFrom(ch.primary.acked$.pipe(filter((s) => s === 299)));
    expect(ch.primary.ackedSeq).toBe(299);
    expect(ch.primary.lag).toEqual({ entries: 0, bytes: 0, ms: 0 });
    const enc = new Encoder();
    expect(ch.stats()).toEqual({ bytesSent: sent.reduce((n, e) => n + enc.encode(e).length, 0), entriesSent: 300 });
  });

  it('keeps entries for a backup that subscribes late', async () => {
    const ch = createInProcessChannel();
    const sent = stream(10);
    for (const e of sent) ch.primary.send(e);
    await sleep(5);
    expect(await lastValueFrom(ch.backup.entries$.pipe(take(10), toArray()))).toEqual(sent);
  });

  it('acked$ only rises, and lag counts what is unacked', async () => {
    const ch = createInProcessChannel();
    const seen: number[] = [];
    ch.primary.acked$.subscribe((s) => seen.push(s));
    for (const e of stream(10)) ch.primary.send(e);
    await firstValueFrom(ch.backup.entries$.pipe(take(10), toArray()));
    ch.backup.ack(4);
    ch.backup.ack(2);
    await sleep(1);
    expect(ch.primary.lag.entries).toBe(5);
    ch.backup.ack(3);
    ch.backup.ack(9);
    await sleep(1);
    expect(seen).toEqual([-1, 4, 9]);
    expect(ch.primary.lag.entries).toBe(0);
  });

  it('raises pressure above the high-water mark and drops it below the low one', async () => {
    const ch = createInProcessChannel({ highWaterBytes: 1000, lowWaterBytes: 200 });
    const seen: boolean[] = [];
    ch.primary.pressure$.subscribe((p) => seen.push(p));
    const sent = stream(120);
    for (const e of sent) ch.primary.send(e);
    expect(ch.primary.lag.bytes).toBeGreaterThan(1000);
    await firstValueFrom(ch.backup.entries$.pipe(take(120), toArray()));
    ch.backup.ack(60); // still above the low-water mark
    await sleep(1);
    expect(ch.primary.lag.bytes).toBeGreaterThan(200);
    expect(seen).toEqual([false, true]);
    ch.backup.ack(119);
    await sleep(1);
    expect(seen).toEqual([false, true, false]);
  });

  it('applies the entry high-water mark too', () => {
    const ch = createInProcessChannel({ highWaterEntries: 5, lowWaterEntries: 1 });
    const seen: boolean[] = [];
    ch.primary.pressure$.subscribe((p) => seen.push(p));
    for (const e of stream(6)) ch.primary.send(e);
    expect(seen).toEqual([false, true]);
  });

  it('delays entries and acks by latencyMs each way', async () => {
    const ch = createInProcessChannel({ latencyMs: 40 });
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
    const ch = createInProcessChannel();
    const got: LogEntry[] = [];
    ch.backup.entries$.subscribe((e) => {
      got.push(e);
      ch.backup.ack(e.seq);
    });
    const status = firstValueFrom(watchdog$(ch.backup.entries$, 30));
    const sent = stream(20);
    for (const e of sent.slice(0, 10)) ch.primary.send(e);
    await sleep(5);
    ch.cut();
    for (const e of sent.slice(10)) ch.primary.send(e);
    expect(await status).toBe('peer.silent');
    expect(got).toEqual(sent.slice(0, 10));
    expect(ch.primary.ackedSeq).toBe(9);
    expect(ch.primary.lag.entries).toBe(10);
  });

  it('turns a corrupt frame into channel.failed on both ends and completes entries$', async () => {
    const ch = createInProcessChannel();
    const primaryEvents = eventsOf(ch.primary.events$);
    const backupEvents = eventsOf(ch.backup.events$);
    const done = lastValueFrom(ch.backup.entries$.pipe(toArray()));
    const sent = stream(5);
    ch.primary.send(sent[0]!);
    await sleep(1);
    ch.corrupt();
    ch.primary.send(sent[1]!);
    await sleep(1);
    for (const e of sent.slice(2)) ch.primary.send(e);
    expect(await done).toEqual(sent.slice(0, 1));
    expect(backupEvents.map((e) => e.type)).toEqual(['channel.open', 'channel.failed']);
    expect(primaryEvents.map((e) => e.type)).toEqual(['channel.open', 'channel.failed']);
    const failed = backupEvents[1] as Extract<ChannelEvent, { type: 'channel.failed' }>;
    expect(failed.error).toBeInstanceOf(LogFrameError);
  });

  it('closes in order: entries already sent arrive, then both ends see channel.closed', async () => {
    const ch = createInProcessChannel({ latencyMs: 5 });
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
    const ch = createInProcessChannel();
    const last = lastValueFrom(ch.primary.events$);
    ch.backup.close();
    expect(await last).toEqual({ type: 'channel.closed', by: 'peer' });
  });

  it('delivers any stream in order under random ack patterns', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 200 }), fc.nat(1000), fc.array(fc.nat(), { maxLength: 20 }), async (n, from, acks) => {
        const ch = createInProcessChannel();
        const sent = stream(n, from);
        const got = lastValueFrom(ch.backup.entries$.pipe(take(n), toArray()));
        for (const e of sent) ch.primary.send(e);
        expect(await got).toEqual(sent);
        for (const a of acks) ch.backup.ack(from + (a % n));
        await sleep(0);
        const top = acks.length ? Math.max(...acks.map((a) => from + (a % n))) : -1;
        expect(ch.primary.ackedSeq).toBe(top);
        expect(ch.primary.lag.entries).toBe(acks.length ? from + n - 1 - top : n);
      }),
      { numRuns: 50 },
    );
  });

  it('shows the chart of each end as a typed snapshot stream that ends with the channel', async () => {
    const ch = createInProcessChannel();
    const states = lastValueFrom(ch.primary.state$.pipe(map((s) => s.value), toArray()));
    const backupLast = lastValueFrom(ch.backup.state$);
    await sleep(1);
    ch.primary.close();
    expect((await states).at(-1)).toBe('closed');
    expect((await states)).toContainEqual({ open: { flow: 'flowing', peer: 'responsive' } });
    const b = await backupLast;
    expect(b.value).toBe('closed');
    expect(b.status).toBe('done');
  });
});

