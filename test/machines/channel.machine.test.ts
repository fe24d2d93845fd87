// Model-based test of the channel chart against the product (DESIGN §6): xstate/graph's
// shortest paths over machines/channel.machine.ts, each step made to happen to a REAL channel
// end (the channel core with a real transport: the in-process one, and TCP/TLS-PSK on
// loopback), and each state checked by what the product shows: entries delivered in order,
// acks, back-pressure on `pressure$`, the admission or refusal, the events the end reports.
// The chart's own value is never asserted; a broken effect shows as a product that disagrees
// with the model (e.g. a `reportPressure` that does nothing leaves `pressure$` false in `paused`).
//
// Fakes only at the wire: the backup end's model runs against a scripted primary (a TLS-PSK
// server that writes the hello and frames a step asks for); the primary end's model runs
// against a real backup end, through the fault proxy on TCP.
import { afterAll, describe, expect, it } from 'vitest';
import tls from 'node:tls';
import { lastValueFrom, toArray, VirtualAction, VirtualTimeScheduler, type Observable } from 'rxjs';
import type { AnyMachineSnapshot, EventObject } from 'xstate';
import { createTestModel } from 'xstate/graph';
import { channelMachine, type ChannelEvent } from '../../machines/channel.machine.js';
import { Encoder, LogFrameError } from '../../runtime/log/codec.js';
import type { LogEntry } from '../../runtime/log/entry.js';
import { RefusedError, type BackupEnd, type ChannelEvent as LinkEvent, type PrimaryEnd } from '../../runtime/channel/channel.js';
import { createInProcessChannel } from '../../runtime/channel/in-process.js';
import { connectBackup, listenPrimary, PSK_IDENTITY, TLS_CIPHERS } from '../../runtime/channel/tcp.js';
import { decodeRequest, encodeHello, ControlDecoder, type PairIdentity } from '../../runtime/channel/tcp-frames.js';
import { FaultProxy } from '../../runtime/faults/proxy.js';
import { eventsHandled, everyTransition } from './harness.js';

type Type = ChannelEvent['type'];
const EVENT_TYPES: Record<Type, true> = {
  'transport.connected': true, 'peer.admitted': true, 'peer.refused': true, 'window.full': true, 'window.drained': true,
  'peer.silent': true, 'peer.heard': true, 'channel.close': true, 'transport.ended': true, 'peer.closed': true, 'channel.failed': true,
};

const KEY = Buffer.alloc(32, 0x3c);
const HOST = '127.0.0.1';
const IDENTITY: PairIdentity = { instance: 'pmodel-1', imageDigest: 'fedcba9876543210fedcba9876543210', memoryMiB: 16 };
const MEMBER = { instance: '', imageDigest: IDENTITY.imageDigest, memoryMiB: 16 };
const SILENCE_MS = 50;
const HIGH = 4;
const LOW = 1;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Waits for the product to show `cond` (I/O on loopback is asynchronous); fails after 3 s. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let t0 = Date.now(); !cond(); await sleep(1)) if (Date.now() - t0 > 3000) throw new Error(`timed out waiting for ${what}`);
}
const entry = (seq: number): LogEntry => ({ seq, icount: 1000 + seq * 10, type: 'timer' });
/** Moves the watchdog's virtual clock by `ms`. */
const advance = (clock: VirtualTimeScheduler, ms: number): void => {
  clock.maxFrames = clock.frame + ms;
  clock.flush();
};

interface Seen {
  events: LinkEvent[];
  done: boolean;
}
const watch = (events$: Observable<LinkEvent>): Seen => {
  const seen: Seen = { events: [], done: false };
  events$.subscribe({ next: (e) => seen.events.push(e), complete: () => { seen.done = true; } });
  return seen;
};
const last = (s: Seen): LinkEvent | undefined => s.events.at(-1);
const suspects = (s: Seen): number => s.events.filter((e) => e.type === 'channel.suspect').length;

type Exec = () => Promise<void>;
/** A world: executors that make each event happen to the product, and checks of what it shows in a state. */
interface World {
  exec: Partial<Record<Type, Exec>>;
  check(state: AnyMachineSnapshot): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * Runs every path against a fresh world. Every step's event must have an executor in that
 * world (an event without one would pass silently: STYLE §1), every state is checked.
 */
async function runModel(paths: ReturnType<ReturnType<typeof createTestModel>['getShortestPaths']>, make: () => Promise<World>): Promise<number> {
  let steps = 0;
  for (const path of paths) {
    const w = await make();
    try {
      await path.test({
        events: Object.fromEntries(Object.keys(EVENT_TYPES).map((type) => [type, async () => {
          const exec = w.exec[type as Type];
          if (!exec) throw new Error(`no executor for ${type}`);
          await exec();
          steps++;
        }])),
        states: { '*': (s) => w.check(s as AnyMachineSnapshot) },
      });
    } finally {
      await w.dispose();
    }
  }
  return steps;
}

// ---------------------------------------------------------------------------------------
// The primary end, from `open`: flow control, silence, close, failure.

interface PrimaryWire {
  primary: PrimaryEnd;
  backup: BackupEnd;
  corrupt(): void;
  dispose(): Promise<void>;
}

const flowOpts = { highWaterEntries: HIGH, lowWaterEntries: LOW, highWaterBytes: 1 << 20 };

async function inProcessWire(clock: VirtualTimeScheduler): Promise<PrimaryWire> {
  const ch = createInProcessChannel({ ...flowOpts, charts: { primary: { silenceMs: SILENCE_MS, scheduler: clock } } });
  return { primary: ch.primary, backup: ch.backup, corrupt: () => ch.corrupt(), dispose: async () => undefined };
}

async function tcpWire(clock: VirtualTimeScheduler): Promise<PrimaryWire> {
  const l = await listenPrimary({ host: HOST, port: 0, key: KEY, identity: IDENTITY, ...flowOpts, chart: { silenceMs: SILENCE_MS, scheduler: clock } });
  const proxy = await FaultProxy.start(HOST, l.port);
  const b = connectBackup({ host: HOST, port: proxy.port, key: KEY, member: MEMBER });
  await l.end.attached;
  await b.opened;
  return {
    primary: l.end,
    backup: b,
    corrupt: () => proxy.corrupt(),
    dispose: async () => {
      b.close();
      await l.close();
      await proxy.close();
    },
  };
}

async function primaryWorld(wire: (clock: VirtualTimeScheduler) => Promise<PrimaryWire>): Promise<World> {
  const clock = new VirtualTimeScheduler(VirtualAction, 0);
  const w = await wire(clock);
  const { primary, backup } = w;
  const seen = watch(primary.events$);
  const backupSeen = watch(backup.events$);
  const pressure: boolean[] = [];
  primary.pressure$.subscribe((p) => pressure.push(p));
  const got: LogEntry[] = [];
  let gotDone = false;
  backup.entries$.subscribe({ next: (e) => got.push(e), complete: () => { gotDone = true; } });
  const sent: LogEntry[] = [];
  let silences = 0;
  let closedBy: 'local' | 'peer' | undefined;
  let corrupted = -1;
  const send = (): void => {
    const e = entry(sent.length);
    sent.push(e);
    primary.send(e);
  };
  return {
    exec: {
      'window.full': async () => {
        while (primary.lag.entries <= HIGH) send();
        await until(() => got.length === sent.length, 'the backup to receive what was sent');
      },
      'window.drained': async () => {
        backup.ack(sent.length - 1);
        await until(() => primary.ackedSeq === sent.length - 1, 'the ack');
      },
      'peer.silent': async () => {
        silences++;
        advance(clock, SILENCE_MS + 1);
      },
      // Heard again: one more entry, and the oldest one outstanding acknowledged (so the
      // window crosses no mark).
      'peer.heard': async () => {
        send();
        await until(() => got.length === sent.length, 'the entry');
        const acked = primary.ackedSeq;
        backup.ack(acked + 1);
        await until(() => primary.ackedSeq === acked + 1, 'the ack');
      },
      // As a primary node does when its guest ends: the `end` entry, then the close.
      'channel.close': async () => {
        closedBy = 'local';
        const end: LogEntry = { seq: sent.length, icount: 1e6, type: 'end', code: 0 };
        sent.push(end);
        primary.send(end);
        primary.close();
        // Taken no more: an entry sent while closing never reaches the backup.
        primary.send(entry(sent.length));
      },
      'transport.ended': async () => {
        await until(() => seen.done, 'the end of the primary end');
      },
      'peer.closed': async () => {
        closedBy = 'peer';
        backup.close();
        await until(() => seen.done, 'the end of the primary end');
      },
      'channel.failed': async () => {
        corrupted = sent.length;
        w.corrupt();
        send();
        await until(() => seen.done && backupSeen.done, 'both ends to fail');
      },
    },
    async check(state) {
      if (state.matches('open')) {
        await until(() => got.length === sent.length, 'delivery');
        expect(got, 'entries delivered in order').toEqual(sent);
        expect(pressure.at(-1), 'pressure$ shows the paused sender').toBe(state.matches({ open: { flow: 'paused' } }));
        expect(pressure.filter((p, i) => i === 0 || p !== pressure[i - 1]), 'pressure$ changes only at the marks').toEqual(pressure);
        expect(suspects(seen), 'one suspicion report per silence').toBe(silences);
        expect(primary.lag.entries).toBe(sent.length - 1 - primary.ackedSeq);
      } else if (state.matches('closed')) {
        await until(() => gotDone, 'the backup to see the end');
        expect(last(seen)).toEqual({ type: 'channel.closed', by: closedBy });
        expect(got, 'everything sent before the close arrived, nothing after').toEqual(sent);
        expect(last(backupSeen)).toEqual({ type: 'channel.closed', by: closedBy === 'local' ? 'peer' : 'local' });
      } else if (state.matches('failed')) {
        expect(last(seen)?.type).toBe('channel.failed');
        expect(last(backupSeen)?.type).toBe('channel.failed');
        // Nothing from the corrupt chunk on, and all before it, in order.
        expect(got).toEqual(sent.slice(0, corrupted));
      } else if (state.matches('closing')) {
        expect(seen.events.some((e) => e.type === 'channel.closed' && e.by === 'peer')).toBe(false);
      } else {
        throw new Error(`the primary model has no check for ${JSON.stringify(state.value)}`);
      }
    },
    dispose: () => w.dispose(),
  };
}

// ---------------------------------------------------------------------------------------
// The backup end, from `connecting`, against a primary scripted at the wire.

async function freePort(): Promise<number> {
  const s = tls.createServer({});
  await new Promise<void>((r) => s.listen(0, HOST, r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function backupWorld(): Promise<World> {
  const clock = new VirtualTimeScheduler(VirtualAction, 0);
  const port = await freePort();
  let sock: tls.TLSSocket | undefined;
  let request: Uint8Array = new Uint8Array(0);
  let requested = false;
  const control = new ControlDecoder();
  const fromBackup: { acks: number[]; byes: number; eof: boolean } = { acks: [], byes: 0, eof: false };
  const server = tls.createServer({ ciphers: TLS_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', pskCallback: () => KEY }, (s) => {
    sock = s;
    s.on('error', () => undefined);
    s.on('end', () => { fromBackup.eof = true; });
    s.on('data', (d: Buffer) => {
      if (!requested) {
        request = Buffer.concat([request, d]);
        const r = decodeRequest(request);
        if (!r) return;
        requested = true;
        d = Buffer.from(request.subarray(r.used));
      }
      for (const f of control.push(d)) if (f.type === 'ack') fromBackup.acks.push(f.seq); else fromBackup.byes++;
    });
  });
  // Nothing listens yet: the backup retries (`connecting`) until the step that connects it.
  const b = connectBackup({ host: HOST, port, key: KEY, member: MEMBER, connectTimeoutMs: 10_000, retryMs: 5, chart: { silenceMs: SILENCE_MS, scheduler: clock } });
  const seen = watch(b.events$);
  let admission: 'pending' | 'admitted' | Error = 'pending';
  b.admission.then(() => { admission = 'admitted'; }, (e: Error) => { admission = e; });
  const got: LogEntry[] = [];
  let gotDone = false;
  b.entries$.subscribe({ next: (e) => { got.push(e); b.ack(e.seq); }, complete: () => { gotDone = true; } });
  const enc = new Encoder();
  const sent: LogEntry[] = [];
  let silences = 0;
  let closedBy: 'local' | 'peer' | undefined;
  let failedBy: 'frame' | 'hello' | undefined;
  const write = (e: LogEntry): void => {
    sent.push(e);
    sock!.write(enc.encode(e));
  };
  return {
    exec: {
      'transport.connected': async () => {
        await new Promise<void>((r) => server.listen(port, HOST, r));
        await until(() => requested, 'the join request');
      },
      'peer.admitted': async () => {
        sock!.write(encodeHello({ ...IDENTITY, mode: 'boot', generation: 1, reason: '' }));
        write(entry(0));
        write(entry(1));
        await until(() => admission !== 'pending', 'the admission');
      },
      'peer.refused': async () => {
        sock!.write(encodeHello({ ...IDENTITY, mode: 'refused', generation: 1, reason: 'another guest image' }));
        await until(() => seen.done, 'the refusal');
      },
      'peer.silent': async () => {
        silences++;
        advance(clock, SILENCE_MS + 1);
      },
      'peer.heard': async () => {
        write(entry(sent.length));
        await until(() => got.length === sent.length, 'the entry');
      },
      'channel.close': async () => {
        closedBy = 'local';
        b.close();
      },
      'transport.ended': async () => {
        await until(() => seen.done, 'the end of the backup end');
      },
      // The primary's guest ended: the `end` entry, then the end of the stream.
      'peer.closed': async () => {
        closedBy = 'peer';
        sent.push({ seq: sent.length, icount: 1e6, type: 'end', code: 0 });
        sock!.end(enc.encode(sent.at(-1)!));
        await until(() => seen.done, 'the end of the backup end');
      },
      // Before admission a hello that is not one; after, a frame with a flipped bit.
      'channel.failed': async () => {
        if (admission === 'pending') {
          failedBy = 'hello';
          sock!.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'));
        } else {
          failedBy = 'frame';
          const bad = Uint8Array.from(enc.encode(entry(sent.length)));
          bad[bad.length - 2]! ^= 0x10;
          sock!.write(bad);
        }
        await until(() => seen.done, 'the failure');
      },
    },
    async check(state) {
      if (state.matches('connecting')) {
        await sleep(10);
        expect(requested, 'no join request before the transport is up').toBe(false);
        expect(admission).toBe('pending');
      } else if (state.matches('handshaking')) {
        expect(requested).toBe(true);
        await sleep(5);
        expect(admission, 'no admission before the hello').toBe('pending');
        expect(got).toEqual([]);
      } else if (state.matches('open')) {
        expect(admission).toBe('admitted');
        await until(() => got.length === sent.length && fromBackup.acks.at(-1) === sent.length - 1, 'delivery and its ack');
        expect(got, 'entries delivered in order').toEqual(sent);
        expect(fromBackup.acks, 'acks coalesced, only rising').toEqual([...new Set(fromBackup.acks)].sort((x, y) => x - y));
        expect(suspects(seen)).toBe(silences);
      } else if (state.matches('refused')) {
        expect(admission).toBeInstanceOf(RefusedError);
        expect((last(seen) as { error: Error }).error).toBeInstanceOf(RefusedError);
        expect(got).toEqual([]);
      } else if (state.matches('closed')) {
        await until(() => gotDone, 'entries$ to complete');
        expect(last(seen)).toEqual({ type: 'channel.closed', by: closedBy });
        expect(got).toEqual(admission === 'admitted' ? sent : []);
        if (closedBy === 'local' && admission === 'admitted') await until(() => fromBackup.byes === 1 && fromBackup.eof, 'the goodbye');
      } else if (state.matches('failed')) {
        const e = last(seen) as Extract<LinkEvent, { type: 'channel.failed' }>;
        expect(e.type).toBe('channel.failed');
        if (failedBy === 'frame') expect(e.error).toBeInstanceOf(LogFrameError);
        else expect(e.error.message).toMatch(/did not answer as an ftvm primary/);
        expect(got).toEqual(sent);
      } else if (state.matches('closing')) {
        expect(last(seen)?.type).not.toBe('channel.failed');
      } else {
        throw new Error(`the backup model has no check for ${JSON.stringify(state.value)}`);
      }
    },
    dispose: async () => {
      b.close();
      sock?.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

// What each end can be made to do. The primary end is admitted by its listener before its
// chart starts (strays are refused one at a time outside it), so its model starts at `open`;
// the backup end sends no frames, so it has no send window. While closing, each end only
// waits for its close to finish.
const primaryEvents = (s: AnyMachineSnapshot, e: EventObject): boolean =>
  !s.matches('closing') || e.type === 'transport.ended';
const backupEvents = (s: AnyMachineSnapshot, e: EventObject): boolean =>
  !e.type.startsWith('window.') && (!s.matches('closing') || e.type === 'transport.ended') &&
  !(s.matches('connecting') && e.type !== 'transport.connected' && e.type !== 'channel.close') &&
  // A refusal comes in the hello (TLS-PSK with another key is the connecting one, tcp-channel.test.ts).
  !(s.matches('connecting') && e.type === 'peer.refused');

const model = createTestModel(channelMachine, { ...everyTransition, stopWhen: (s) => s.status === 'done' });
const openState = channelMachine.resolveState({ value: { open: { flow: 'flowing', peer: 'responsive' } }, context: {} });
const primaryPaths = model.getShortestPaths({ fromState: openState, filterEvents: primaryEvents } as never);
const backupPaths = model.getShortestPaths({ filterEvents: backupEvents } as never);

describe('channel chart, model-based against real channel ends', () => {
  const opened: Array<() => Promise<void>> = [];
  afterAll(async () => { for (const c of opened) await c(); });

  it('every event has an executor in some world, and the chart handles no other', () => {
    const covered = new Set([...primaryPaths, ...backupPaths].flatMap((p) => p.steps.map((s) => s.event.type as string)).filter((t) => t !== 'xstate.init'));
    expect([...covered].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    expect([...eventsHandled(channelMachine)].sort()).toEqual(Object.keys(EVENT_TYPES).sort());
  });

  it('primary end over the in-process transport', async () => {
    const steps = await runModel(primaryPaths, () => primaryWorld(inProcessWire));
    expect(steps).toBeGreaterThan(20);
  });

  it('primary end over TCP/TLS-PSK on loopback', async () => {
    const steps = await runModel(primaryPaths, () => primaryWorld(tcpWire));
    expect(steps).toBeGreaterThan(20);
  }, 60_000);

  it('backup end over TCP/TLS-PSK on loopback, from connect through the handshake', async () => {
    const steps = await runModel(backupPaths, backupWorld);
    expect(steps).toBeGreaterThan(20);
  }, 60_000);

  it('a late subscriber gets the whole log: entries wait until the backup listens', async () => {
    const ch = createInProcessChannel();
    for (let i = 0; i < 5; i++) ch.primary.send(entry(i));
    await sleep(2);
    const all = lastValueFrom(ch.backup.entries$.pipe(toArray()));
    ch.primary.close();
    expect(await all).toEqual([0, 1, 2, 3, 4].map(entry));
  });
});
