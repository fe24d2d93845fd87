import { existsSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { concat, fromEvent, NEVER, take, timer } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { watchPeer } from '../runtime/ft/suspicion.js';
import { runQueueWaitReader, StallMeter, watchdog$, type StallClock } from '../runtime/channel/watchdog.js';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
const values = { s: 'peer.silent', h: 'peer.heard' } as const;

describe('watchdog$', () => {
  it('reports silence once, then hearing, counted from the latest arrival', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const activity = cold('-a--a-------a');
      expectObservable(watchdog$(activity, 5), '^ 20ms !').toBe('9ms s 2ms h 4ms s', values);
    });
  });

  it('reports silence only once however long it lasts', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-'), 5), '^ 40ms !').toBe('5ms s', values);
    });
  });

  it('stays quiet while traffic keeps arriving within the timeout', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-a-a-a-a-a-a-a-a'), 3), '^ 15ms !').toBe('', values);
    });
  });

  it('reports the silence after the activity completes, then completes', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-a|'), 5)).toBe('6ms (s|)', values);
    });
  });

  it('passes an activity error through', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-a#', undefined, new Error('boom')), 5)).toBe('--#', values, new Error('boom'));
    });
  });

  it('with a ceiling: watches at the ceiling until a window shows the host calm, then at GAP_FACTOR times its longest gap', () => {
    scheduler().run(({ cold, expectObservable }) => {
      // Fixed timeout: silent 10 ms after each arrival.
      expectObservable(watchdog$(cold('a 59ms b'), 10), '^ 300ms !').toBe('10ms s 49ms h 9ms s', values);
    });
    scheduler().run(({ cold, expectObservable }) => {
      // A ceiling at or below the timeout (0: none) leaves the timeout fixed.
      expectObservable(watchdog$(cold('a 59ms b'), 10, undefined, 0), '^ 300ms !').toBe('10ms s 49ms h 9ms s', values);
    });
    scheduler().run(({ cold, expectObservable }) => {
      // No history: the ceiling (100 ms) holds; the 60 ms gap would ask 120, the ceiling says 100.
      expectObservable(watchdog$(cold('a 59ms b'), 10, undefined, 100), '^ 300ms !').toBe('160ms s', values);
    });
    scheduler().run(({ expectObservable }) => {
      // Arrivals every 5 ms for 2.1 s: after one calm window (GAP_WINDOW_MS) the timeout is
      // GAP_FACTOR (4) times the 5 ms gap, at least the 10 ms floor: silent 20 ms after the last arrival.
      const steady = concat(timer(0, 5).pipe(take(420)), NEVER);
      expectObservable(watchdog$(steady, 10, undefined, 100), '^ 2300ms !').toBe('2115ms s', values);
    });
    scheduler().run(({ expectObservable }) => {
      // The same, then one 30 ms gap (silent after 20 ms, heard at 30): the next silence waits
      // 4 × 30 ms, held to the 100 ms ceiling.
      const gapped = concat(timer(0, 5).pipe(take(420)), timer(30), NEVER);
      expectObservable(watchdog$(gapped, 10, undefined, 100), '^ 2500ms !').toBe('2115ms s 9ms h 99ms s', values);
    });
  });

  it('remembers a gap as long as the floor for LONG_GAP_MS, shorter gaps for two windows', () => {
    scheduler().run(({ expectObservable }) => {
      // Calm, one 30 ms gap at 2.1 s, then arrivals every 5 ms for 5 s more (two windows go by):
      // the 30 ms gap reached the 10 ms floor, so the silence after it still waits 4 × 30 ms
      // (the 100 ms ceiling), not 4 × 5.
      const gapped = concat(timer(0, 5).pipe(take(420)), timer(30), timer(0, 5).pipe(take(1000)), NEVER);
      expectObservable(watchdog$(gapped, 10, undefined, 100), '^ 7500ms !').toBe('2115ms s 9ms h 5094ms s', values);
    });
    scheduler().run(({ expectObservable }) => {
      // The same, but calm for 11 s after the gap: forgotten, the silence is back at 4 × 5 ms.
      const gapped = concat(timer(0, 5).pipe(take(420)), timer(30), timer(0, 5).pipe(take(2200)), NEVER);
      expectObservable(watchdog$(gapped, 10, undefined, 100), '^ 14000ms !').toBe('2115ms s 9ms h 11014ms s', values);
    });
  });

  it('reports at once a stream that ends before its clean-end value, after the timeout one that ends after it', () => {
    const isEnd = (v: unknown): boolean => v === 'e';
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-a|'), 5, undefined, 5, isEnd)).toBe('--(s|)', values);
    });
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-e-a|'), 5, undefined, 5, isEnd)).toBe('8ms (s|)', values);
    });
  });

  // A real socket and a real stall: a peer (a worker thread) writes every 5 ms while this
  // thread is blocked for 4 timeouts. Its bytes wait in the socket; the timer is due too.
  it('does not report silence for bytes that queued while this thread stalled', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const accepted = new Promise<Socket>((r) => server.once('connection', r));
    const peer = new Worker(
      `const s = require('node:net').connect(${port}, '127.0.0.1');
       s.on('connect', () => { const t = setInterval(() => s.write('x'), 5); s.on('error', () => clearInterval(t)); s.on('close', () => clearInterval(t)); });
       s.on('error', () => {});`,
      { eval: true },
    );
    const sock = await accepted;
    const seen: string[] = [];
    const sub = watchdog$(fromEvent(sock, 'data'), 50).subscribe((s) => seen.push(s));
    try {
      await new Promise((r) => setTimeout(r, 30));
      const until = performance.now() + 200;
      while (performance.now() < until) { /* the stall */ }
      await new Promise((r) => setTimeout(r, 60));
      expect(seen).toEqual([]);
      // And a real silence is still reported.
      await peer.terminate();
      await new Promise((r) => setTimeout(r, 120));
      expect(seen).toEqual(['peer.silent']);
    } finally {
      sub.unsubscribe();
      sock.destroy();
      await peer.terminate();
      server.close();
    }
  });
});

/** A StallClock on a TestScheduler's clock: this thread "could not run" during [from, to). */
const fakeStall = (now: () => number, from: number, to: number): StallClock => ({
  stalledMs: () => Math.max(0, Math.min(now(), to) - from),
  peakMs: () => (now() >= from ? Math.min(now(), to) - from : 0),
});

describe('watchdog$ with this thread\'s own stalls', () => {
  it('leaves the time this thread could not run out of the silence', () => {
    const s = scheduler();
    s.run(({ cold, expectObservable }) => {
      // Timeout 10 ms; the last arrival at 1 ms; this thread stalled from 3 to 33 ms: silent at 41, not 11.
      const own = fakeStall(() => s.now(), 3, 33);
      expectObservable(watchdog$(cold('-a'), 10, undefined, 10, undefined, own), '^ 100ms !').toBe('41ms s', values);
    });
  });

  it('widens the adaptive timeout to GAP_FACTOR times its own longest recent stall', () => {
    const s = scheduler();
    s.run(({ expectObservable }) => {
      // A calm window of arrivals every 5 ms (timeout 4 × 5 ms); the peer's last arrival at
      // 2100 ms, then this thread stalls 20 ms from 2102 (its own stall, not the peer's): the
      // silence is reported after 4 × 20 ms it could watch, 2100 + 20 + 80.
      const steady = concat(timer(0, 5).pipe(take(421)), NEVER);
      const own = fakeStall(() => s.now(), 2102, 2122);
      expectObservable(watchdog$(steady, 10, undefined, 100, undefined, own), '^ 2400ms !').toBe('2200ms s', values);
    });
  });
});

describe('StallMeter', () => {
  it('measures a real stall of this thread at once, and never more than the time that passed', async () => {
    const meter = new StallMeter(5, 10);
    await new Promise((r) => setTimeout(r, 50));
    const before = meter.stalledMs();
    const until = performance.now() + 200;
    while (performance.now() < until) { /* the stall */ }
    // Counted at once, before the meter's own timer has run again.
    expect(meter.stalledMs() - before).toBeGreaterThan(150);
    expect(meter.peakMs()).toBeGreaterThan(150);
    await new Promise((r) => setTimeout(r, 20));
    const after = meter.stalledMs();
    expect(after - before).toBeLessThan(260);
    // Never more stall than time: asleep, at most the delays of a loaded host's wake-ups.
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 60));
    expect(meter.stalledMs() - after).toBeLessThanOrEqual(performance.now() - t0);
  });

  it('reads the run-queue wait where the kernel gives it: a thread denied its core counts as stalled', async () => {
    const read = runQueueWaitReader();
    expect(read === undefined).toBe(!existsSync('/proc/thread-self/schedstat'));
    if (!read) return;
    const sleeping = read();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 100));
    // Asleep, it wants no core: at most the delays a loaded host adds to its wake-ups.
    expect(read() - sleeping).toBeLessThanOrEqual(performance.now() - t0);
    // More busy threads than cores, this one busy too for 300 ms: the kernel shares the cores,
    // so this thread waits its turn part of the time.
    const hogs = Array.from({ length: availableParallelism() + 1 }, () => new Worker(
      'const t = Date.now(); while (Date.now() - t < 1500) {}',
      { eval: true },
    ));
    await new Promise((r) => setTimeout(r, 50));
    const meter = new StallMeter(5, 5, undefined, read);
    const before = read();
    const stalledBefore = meter.stalledMs();
    const until = performance.now() + 300;
    while (performance.now() < until) { /* busy, on a shared core */ }
    const waited = read() - before;
    await Promise.all(hogs.map((h) => h.terminate()));
    expect(waited).toBeGreaterThan(5);
    expect(waited).toBeLessThan(400);
    expect(meter.stalledMs() - stalledBefore).toBeGreaterThanOrEqual(waited - 1);
  });

  // A host that stalls both sides at once (a loaded machine takes both processes' cores):
  // the peer (a worker thread) stops sending, this thread stalls 300 ms, and the peer comes
  // back 30 ms after it. Nothing was sent that the second look could read; what tells this
  // silence from a dead peer is that this thread could not run through most of it.
  it('a peer stalled together with this thread is not reported silent', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const accepted = new Promise<Socket>((r) => server.once('connection', r));
    const running = new Int32Array(new SharedArrayBuffer(4));
    Atomics.store(running, 0, 1);
    const peer = new Worker(
      `const running = new Int32Array(require('node:worker_threads').workerData);
       const s = require('node:net').connect(${port}, '127.0.0.1');
       let resumeAt = 0;
       s.on('connect', () => setInterval(() => {
         if (Atomics.load(running, 0) === 0) { resumeAt = Date.now() + 30; return; }
         if (Date.now() >= resumeAt) s.write('x');
       }, 5));
       s.on('error', () => {});`,
      { eval: true, workerData: running.buffer },
    );
    const sock = await accepted;
    const run = async (own: StallClock | undefined): Promise<string[]> => {
      const seen: string[] = [];
      const sub = watchdog$(fromEvent(sock, 'data'), 100, undefined, 100, undefined, own).subscribe((st) => seen.push(st));
      await new Promise((r) => setTimeout(r, 40));
      Atomics.store(running, 0, 0);
      // The peer's last bytes are read before the stall.
      await new Promise((r) => setTimeout(r, 15));
      const until = performance.now() + 300;
      while (performance.now() < until) { /* the stall */ }
      Atomics.store(running, 0, 1);
      await new Promise((r) => setTimeout(r, 100));
      sub.unsubscribe();
      return seen;
    };
    try {
      expect(await run(new StallMeter(5, 10))).toEqual([]);
      // Without the meter the same stall reads as the peer's silence: what the meter is for.
      expect(await run(undefined)).toEqual(['peer.silent', 'peer.heard']);
    } finally {
      sock.destroy();
      await peer.terminate();
      server.close();
    }
  });
});

describe('watchPeer with this thread\'s own stalls', () => {
  it('the confirmation waits confirmMs this thread could run: a stall during it is waited again', async () => {
    let stalled = 0;
    const clock: StallClock = { stalledMs: () => stalled, peakMs: () => 0 };
    const events: { type: string; at: number }[] = [];
    const t0 = performance.now();
    const sub = watchPeer(NEVER, 20, 30, (e) => {
      events.push({ type: e.type, at: performance.now() - t0 });
      // 10 ms into the confirmation this thread "loses its core" for 60 ms.
      if (e.type === 'peer.silent') setTimeout(() => { stalled += 60; }, 10);
    }, 20, clock);
    try {
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      sub.unsubscribe();
    }
    expect(events.map((e) => e.type)).toEqual(['peer.silent', 'suspect.expired']);
    expect(events[1]!.at - events[0]!.at).toBeGreaterThanOrEqual(30 + 60 - 2);
  });
});
