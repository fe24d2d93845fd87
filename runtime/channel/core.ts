// The logging channel's core (DESIGN §4), one for every transport, as TinyEMU's virtio.c is
// one queue implementation under thin devices: framing and batching of entries, the send
// window (lag, flow control), decoding, `entries$`, ack coalescing, and the channel chart
// (machines/channel.machine.ts) that decides each end's state. A transport only moves bytes
// and reports what happened to them; the chart's effects that touch the wire are its
// (`.provide()`), the others are the core's.
//
// Facts reach the chart through one stream: the transport and the send window push them into
// a private Subject, one subscription sends them on (with the watchdog's silence reports
// merged in). The chart's tags gate the data path: entries and acks never pass through the
// chart, so a chunk of frames costs no chart event (one `send` per fact, never per entry).
// NOTE a running actor executes an action during its transition, before getSnapshot() shows
// the new state: effects that move data take `now` rather than ask the tags.
//
// What leaves when (the channel's cost is per write, not per byte: one TLS record and one
// write(2), or one postMessage, each): entries of one tick leave as one chunk, and the acks of
// one tick as one ack. An entry nobody waits for (not `awaited`) is held up to `holdMs` to
// leave with the next awaited one or the next hold's end; an ack that covers no awaited
// entry is held alike. An awaited entry and its ack never wait for the hold.

import { BehaviorSubject, defer, from, map, merge, NEVER, Observable, ReplaySubject, startWith, Subject, type SchedulerLike, type Subscription } from 'rxjs';
import { createActor, type Actor, type ActorOptions, type SnapshotFrom } from 'xstate';
import { channelMachine, type ChannelEvent as ChartEvent } from '../../machines/channel.machine.js';
import { Decoder, LogFrameError } from '../log/codec.js';
import type { LogEntry } from '../log/entry.js';
import type { BackupEnd, ChannelEvent, ChannelStats, FlowControlOptions, Lag, PrimaryEnd } from './channel.js';
import { SendWindow } from './send-window.js';
import { watchdog$ } from './watchdog.js';
import { concatBytes } from './bytes.js';

export type ChannelChartEvent = ChartEvent;
export type ChannelSnapshot = SnapshotFrom<typeof channelMachine>;

export interface ChartOptions {
  /** The chart's actor id (inspection: `primary.channel`, `backup.channel`). */
  id?: string;
  inspect?: ActorOptions<typeof channelMachine>['inspect'];
  /** Report the peer silent (`peer.silent`) after this long without hearing from it. */
  silenceMs?: number;
  /** The watchdog's clock (tests pass a virtual one). */
  scheduler?: SchedulerLike;
}

/** The effects a transport supplies to the chart of its end. */
export interface TransportEffects {
  /** Opening moves of the handshake (send the join request, or the hello). */
  startHandshake(): void;
  /** Orderly end of this side, behind what was written; report `ended()` once done. */
  end(): void;
  /** Tear down at once; `error` is why (undefined: refused or closed before it opened). */
  abort(error: Error | undefined): void;
}

export interface PrimaryTransport extends TransportEffects {
  /** One chunk of frames (the core gives up the chunk: the transport may transfer its buffer). */
  write(chunk: Uint8Array): void;
}

export interface BackupTransport extends TransportEffects {
  /** One coalesced ack: every entry up to `seq` arrived and was taken. */
  writeAck(seq: number): void;
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/**
 * Entries whose ack someone waits for: an output marker (the output rule holds outputs until
 * it is acked), a joiner's snapshot (the pair is protected again once it is acked) and the end.
 */
export const awaited = (e: LogEntry): boolean => e.type === 'output' || e.type === 'snapshot' || e.type === 'end';

/** The hold of the channels between threads and processes, where a write costs a TLS record or a postMessage. */
export const DEFAULT_HOLD_MS = 1;

/** Held entries past this many bytes leave at once: large inputs gain nothing by waiting. */
export const HOLD_MAX_BYTES = 16 * 1024;

/** Runs `fn` after `ms`, or as a microtask when 0 (order kept among equal delays). */
export const later = (ms: number, fn: () => void): void => {
  if (ms <= 0) queueMicrotask(fn);
  else setTimeout(fn, ms);
};

/** The chart of one end, fed from one stream of facts; its snapshots leave as `state$`. */
abstract class ChartedEnd {
  protected readonly actor: Actor<typeof channelMachine>;
  private readonly facts = new Subject<ChartEvent>();
  private readonly factsSub: Subscription;
  protected readonly events = new ReplaySubject<ChannelEvent>();
  /** Why the channel failed or was refused, for the report. */
  protected failure: Error | undefined;
  /** Typed snapshots of this end's chart, the current one first; completes at its end. */
  readonly state$: Observable<ChannelSnapshot>;

  constructor(effects: () => TransportEffects | undefined, opts: ChartOptions, activity$: Observable<unknown>) {
    const chart = channelMachine.provide({
      actions: {
        startHandshake: () => effects()?.startHandshake(),
        reportOpen: () => this.opened(),
        reportPressure: (_, params) => this.pressure(params.on),
        reportSuspect: () => this.events.next({ type: 'channel.suspect' }),
        endTransport: () => this.ending(),
        abortTransport: () => effects()?.abort(this.failure),
        reportClosed: (_, params) => this.finish({ type: 'channel.closed', by: params.by }),
        reportRefused: () => this.finish({ type: 'channel.failed', error: this.failure ?? new Error('refused') }),
        reportFailed: () => this.finish({ type: 'channel.failed', error: this.failure ?? new Error('channel failed') }),
      },
    });
    this.actor = createActor(chart, {
      ...(opts.id === undefined ? {} : { id: opts.id }),
      ...(opts.inspect ? { inspect: opts.inspect } : {}),
    });
    const actor = this.actor;
    this.state$ = defer(() => (actor.getSnapshot().status === 'active' ? from(actor).pipe(startWith(actor.getSnapshot())) : from([actor.getSnapshot()])));
    const silence$ = opts.silenceMs === undefined ? NEVER : watchdog$(activity$, opts.silenceMs, opts.scheduler).pipe(map((type): ChartEvent => ({ type })));
    this.actor.start();
    this.factsSub = merge(this.facts, silence$).subscribe((e) => actor.send(e));
    this.actor.subscribe({ complete: () => this.factsSub.unsubscribe() });
  }

  /** A fact for the chart. */
  protected fact(type: ChartEvent['type']): void {
    this.facts.next({ type } as ChartEvent);
  }

  protected has(tag: 'accepting' | 'writable' | 'receiving'): boolean {
    return this.actor.getSnapshot().hasTag(tag);
  }

  /** The chart's current snapshot. */
  get snapshot(): ChannelSnapshot {
    return this.actor.getSnapshot();
  }

  /** The transport is up. */
  connected(): void {
    this.fact('transport.connected');
  }

  /** The handshake admitted the peer. */
  admitted(): void {
    this.fact('peer.admitted');
  }

  /** The peer turned this end away. */
  refused(error: Error): void {
    if (this.actor.getSnapshot().status !== 'active') return;
    this.failure ??= error;
    this.fact('peer.refused');
  }

  /** The stream broke. The first reason is kept. */
  fail(error: unknown): void {
    if (this.actor.getSnapshot().status !== 'active') return;
    this.failure ??= asError(error);
    this.fact('channel.failed');
  }

  /** This end's orderly close has left. */
  ended(): void {
    this.fact('transport.ended');
  }

  /** This end closes in order. */
  close(): void {
    this.fact('channel.close');
  }

  /** True while the chart closes this end in order (a transport's end of stream is then expected). */
  get closing(): boolean {
    return this.actor.getSnapshot().matches('closing');
  }

  protected abstract opened(): void;
  protected abstract pressure(on: boolean): void;
  protected abstract ending(): void;

  protected finish(e: ChannelEvent): void {
    this.events.next(e);
    this.events.complete();
    this.finished(e);
  }

  protected abstract finished(e: ChannelEvent): void;
}

/** The primary's end: frames, batches and sends entries, takes acks, bounds the lag. */
export class PrimaryCore extends ChartedEnd {
  readonly window: SendWindow;
  private readonly pressureSubject = new BehaviorSubject<boolean>(false);
  private transport: PrimaryTransport | undefined;
  private outbound: Uint8Array[] = [];
  private outboundBytes = 0;
  private flushScheduled = false;
  private chunksSent = 0;
  private readonly holdMs: number;
  /** Armed by the first held entry of a chunk; an awaited entry's flush disarms it. */
  private holdTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly holdEnded = (): void => {
    this.holdTimer = undefined;
    this.flush();
  };
  private readonly acks$: Observable<number>;
  readonly end: PrimaryEnd & { readonly state$: Observable<ChannelSnapshot> };
  /** Settles once the peer was admitted, or the end finished without one. */
  readonly attached: Promise<void>;
  private attach!: { resolve: () => void; reject: (e: Error) => void };

  constructor(opts: FlowControlOptions & ChartOptions = {}, transport?: PrimaryTransport) {
    const window = new SendWindow(opts);
    // Set before the chart starts: its first effects may need the window.
    let self: PrimaryCore | undefined;
    super(() => self?.transport, opts, window.acked$);
    self = this;
    this.window = window;
    this.transport = transport;
    this.holdMs = opts.holdMs ?? 0;
    this.acks$ = window.acked$;
    this.attached = new Promise<void>((resolve, reject) => { this.attach = { resolve, reject }; });
    this.attached.catch(() => undefined);
    const core = this;
    this.end = {
      send: (e) => core.send(e),
      acked$: this.acks$,
      get ackedSeq(): number {
        return core.window.ackedSeq;
      },
      get lag(): Lag {
        return core.window.lag;
      },
      pressure$: this.pressureSubject.asObservable(),
      events$: this.events.asObservable(),
      state$: this.state$,
      close: () => core.close(),
    };
  }

  /** The transport arrived later (TCP: once a backup connected). */
  setTransport(t: PrimaryTransport): void {
    this.transport = t;
  }

  stats(): ChannelStats {
    return this.window.stats();
  }

  /** Chunks written so far: one TLS record and write(2), or one postMessage, each. */
  get chunks(): number {
    return this.chunksSent;
  }

  /**
   * Encodes and enqueues `e`. Entries of one tick leave as one chunk; one nobody waits for
   * may wait up to `holdMs` for company (see the top of this file).
   */
  send(e: LogEntry): void {
    if (!this.has('accepting')) return;
    const frame = this.window.frame(e);
    this.outbound.push(frame);
    this.outboundBytes += frame.length;
    const full = this.window.sent(e.seq, frame.length) === 'full';
    if (full) this.fact('window.full');
    if (this.flushScheduled) return;
    if (this.holdMs > 0 && !awaited(e) && !full && this.outboundBytes < HOLD_MAX_BYTES) {
      this.holdTimer ??= setTimeout(this.holdEnded, this.holdMs);
      return;
    }
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  /**
   * Sends what waits, if the chart lets frames out now (otherwise they wait for `open`).
   * `now`: called by the chart's own effect, which runs before its snapshot shows the state.
   */
  flush(now = false): void {
    this.flushScheduled = false;
    if (this.outbound.length === 0 || !this.transport || !(now || this.has('writable'))) return;
    if (this.holdTimer !== undefined) {
      clearTimeout(this.holdTimer);
      this.holdTimer = undefined;
    }
    const parts = this.outbound;
    this.outbound = [];
    this.outboundBytes = 0;
    this.chunksSent++;
    this.transport.write(parts.length === 1 ? parts[0]! : concatBytes(parts));
  }

  /** An ack arrived: everything up to `seq` was received. */
  ack(seq: number): void {
    if (this.window.ack(seq) === 'drained') this.fact('window.drained');
  }

  /** The backup closed in order. */
  peerClosed(): void {
    this.fact('peer.closed');
  }

  protected opened(): void {
    this.events.next({ type: 'channel.open' });
    this.attach.resolve();
    this.flush(true);
    // Entries that waited for a backup may have filled the window before the chart could pause.
    if (this.window.full) this.fact('window.full');
  }

  protected pressure(on: boolean): void {
    this.pressureSubject.next(on);
  }

  protected ending(): void {
    this.flush(true);
    this.transport?.end();
  }

  protected finished(e: ChannelEvent): void {
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    this.outbound = [];
    this.outboundBytes = 0;
    this.attach.reject(e.type === 'channel.failed' ? e.error : new Error('channel closed before a backup attached'));
    this.window.complete();
    this.pressureSubject.complete();
  }
}

/** The backup's end: decodes chunks into `entries$` (in order, kept until subscribed), coalesces acks. */
export class BackupCore extends ChartedEnd {
  private readonly decoder = new Decoder();
  private readonly entries = new Subject<LogEntry>();
  private readonly inbox: Uint8Array[] = [];
  private subscribers = 0;
  private transport: BackupTransport | undefined;
  private readonly arrivals: Subject<void>;
  private endOfStream: (() => Error | undefined) | undefined;
  private pendingAck = -1;
  private sentAck = -1;
  private ackScheduled = false;
  /** The newest awaited entry delivered: an ack that may cover it leaves in its tick. */
  private awaitedSeq = -1;
  private readonly holdMs: number;
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly ackHoldEnded = (): void => {
    this.ackTimer = undefined;
    this.flushAck();
  };
  private sawEnd = false;
  /** Entries of a chunk are being handed to `entries$`; an awaited ack asked meanwhile waits for its end. */
  private delivering = false;
  private ackAtChunkEnd = false;
  readonly counts = { bytesReceived: 0, entriesReceived: 0 };
  readonly end: BackupEnd & { readonly state$: Observable<ChannelSnapshot> };

  constructor(opts: ChartOptions & Pick<FlowControlOptions, 'holdMs'> = {}, transport?: BackupTransport) {
    const arrivals = new Subject<void>();
    let self: BackupCore | undefined;
    super(() => self?.transport, opts, arrivals);
    self = this;
    this.arrivals = arrivals;
    this.transport = transport;
    this.holdMs = opts.holdMs ?? 0;
    const core = this;
    this.end = {
      entries$: new Observable<LogEntry>((sub) => {
        const s = core.entries.subscribe(sub);
        core.subscribers++;
        queueMicrotask(() => core.drain());
        return () => {
          core.subscribers--;
          s.unsubscribe();
        };
      }),
      ack: (seq) => core.ack(seq),
      events$: this.events.asObservable(),
      state$: this.state$,
      close: () => core.close(),
    };
  }

  setTransport(t: BackupTransport): void {
    this.transport = t;
  }

  /** Bytes from the primary, in order. Decoded once someone listens and the chart takes them. */
  chunk(bytes: Uint8Array): void {
    this.counts.bytesReceived += bytes.length;
    this.inbox.push(bytes);
    this.arrivals.next();
    this.drain();
  }

  /**
   * The primary ended its stream. Once what arrived before is delivered, the chart hears
   * `peer.closed`, or the failure `check` names (a log cut short).
   */
  streamEnded(check: () => Error | undefined = () => undefined): void {
    this.endOfStream = check;
    this.drain();
  }

  /** True once an `end` entry was delivered (the primary's guest finished). */
  get sawEndEntry(): boolean {
    return this.sawEnd;
  }

  private drain(): void {
    // Reentered from a subscriber: the loop below goes on with whatever arrived.
    if (this.delivering) return;
    this.delivering = true;
    try {
      this.deliverInbox();
    } finally {
      this.delivering = false;
    }
    if (this.ackAtChunkEnd) {
      this.ackAtChunkEnd = false;
      this.flushAck();
    }
  }

  private deliverInbox(): void {
    while (this.subscribers > 0 && this.inbox.length > 0 && this.has('receiving')) {
      const chunk = this.inbox.shift()!;
      let decoded: readonly LogEntry[];
      try {
        decoded = this.decoder.push(chunk);
      } catch (err) {
        // A bad frame is an error, never a guess (DESIGN §2): the good frames before it count.
        if (err instanceof LogFrameError) for (const e of err.entries) this.entries.next(e);
        this.fail(err);
        return;
      }
      this.counts.entriesReceived += decoded.length;
      for (const e of decoded) {
        if (e.type === 'end') this.sawEnd = true;
        if (awaited(e)) this.awaitedSeq = e.seq;
        this.entries.next(e);
      }
    }
    if (this.endOfStream && this.inbox.length === 0 && this.has('receiving')) {
      let why: Error | undefined;
      try {
        this.decoder.finish();
        why = this.endOfStream();
      } catch (err) {
        why = asError(err);
      }
      this.endOfStream = undefined;
      if (why) this.fail(why);
      else this.fact('peer.closed');
    }
  }

  /**
   * Acknowledges every entry up to `seq`. While no awaited entry is delivered and
   * unacknowledged, the ack may wait up to `holdMs` for the next. With a hold (a transport
   * where each ack is a write: TLS, a posted message), an ack that someone waits for leaves at
   * once, or, asked while a chunk's entries are being delivered, once the last of them is: one
   * ack a chunk. Without one (the embedded channel), the acks of one tick leave as one.
   */
  ack(seq: number): void {
    if (seq <= this.pendingAck || !this.has('writable')) return;
    this.pendingAck = seq;
    if (this.holdMs > 0) {
      if (this.awaitedSeq <= this.sentAck) {
        this.ackTimer ??= setTimeout(this.ackHoldEnded, this.holdMs);
        return;
      }
      // NOTE not a microtask later: the backup node asks from its chart's action, and what it
      // queued meanwhile (the replay's wake-up, a chart step of its CPU) would go first; the
      // output rule waits for this write (docs/BENCHMARKS.md, "stage by stage").
      if (this.delivering) this.ackAtChunkEnd = true;
      else this.flushAck();
      return;
    }
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    queueMicrotask(() => this.flushAck());
  }

  private flushAck(now = false): void {
    this.ackScheduled = false;
    if (this.pendingAck <= this.sentAck || !this.transport || !(now || this.has('writable'))) return;
    if (this.ackTimer !== undefined) {
      clearTimeout(this.ackTimer);
      this.ackTimer = undefined;
    }
    this.sentAck = this.pendingAck;
    this.transport.writeAck(this.sentAck);
  }

  protected opened(): void {
    this.events.next({ type: 'channel.open' });
    queueMicrotask(() => this.drain());
  }

  protected pressure(): void {
    // The backup end sends no frames: its window never fills.
  }

  protected ending(): void {
    this.flushAck(true);
    this.transport?.end();
  }

  protected finished(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.inbox.length = 0;
    this.entries.complete();
    this.arrivals.complete();
  }
}
