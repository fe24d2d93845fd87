import { Subject, filter, take, type Observable, type Subscription } from 'rxjs';
import { createActor, type Actor, type ActorOptions } from 'xstate';
import { primaryMachine, type PrimaryEvent } from '../../machines/primary.machine.js';
import { arbiterClientMachine } from '../../machines/arbiter-client.machine.js';
import type { Machine } from '../machine.js';
import { RecordingEnv } from '../env/recording.js';
import type { PrimaryEnd } from '../channel/channel.js';
import type { LogEntry } from '../log/entry.js';
import type { Arbiter } from '../arbiter/arbiter.js';
import { ArbiterClaims } from './arbiter-claims.js';
import type { RunOutcome } from '../runner.js';
import { runOnCpuActor, type CpuActor } from '../cpu-actor.js';
import type { cpuMachine } from '../../machines/cpu.machine.js';
import { Exit, type Output } from '../types.js';
import { OutputGate, type NumberedOutput, type ReleasedOutput } from './output-gate.js';
import { SeqLog } from './seq-log.js';
import { watchPeer } from './suspicion.js';
import { peerBeats } from '../channel/heartbeat-shared.js';
import { withTiming, type FtTiming } from './timing.js';
import { packSnapshot } from './snapshot-wire.js';
import { BatchChain, BatchSlicer } from './batch-slice.js';

const DEFAULT_BATCH = 1_000_000;
/**
 * While outputs are held, batches last about this long (ms): the ack that releases them is
 * read only when this node's event loop turns, between batches.
 */
const HELD_SLICE_MS = 0.04;
/*
 * When log entries leave: each time one chunk, so one TLS record and a write here, one read
 * and one ack on the backup, tens of µs on both nodes. An output's marker leaves at the end of
 * its batch (the output rule waits for its ack). Entries no output waits for (a query's net-rx
 * before its answer is computed, a clock read after it) go with the next marker, or at the
 * end of a batch once PLAIN_HOLD_MS old; a guest that sleeps sends them with its heartbeat.
 * A dns query so costs one chunk and one ack, where its entries went out in two or three.
 */
const PLAIN_HOLD_MS = 1;
/*
 * The ack clock (like Nagle's algorithm, RFC 896, with a window): while MARKER_WINDOW markers
 * already sent are unacknowledged, or while the guest has more network input to read (frames
 * queued for it or delivered and not yet read: MachineIo.netInputInHand, the queries behind
 * the one just answered), the next outputs' markers wait, so that the answers computed
 * meanwhile leave in one chunk, one TLS record and one ack, not one each. They leave when
 * an ack arrives and the guest has nothing more to read (this node's ack handler sends them),
 * when the guest goes to sleep (wfi: nothing more could share the chunk), or at a batch end or
 * heartbeat once the oldest waited MARKER_HOLD_MS. With one query in flight a marker leaves at
 * the end of its batch as before (the frame being answered is not input in hand): the clock
 * adds no latency there.
 * A server with a queue in front of it, on a host where acks come back fast (the backup on a
 * core or host of its own), used to send a chunk per answer: the window never filled.
 * It holds network outputs only: a console line's bytes already share their slice's marker,
 * and holding the next line behind an ack cost the seq guest ×4 in output-rule delay over TCP
 * (p50 0.6–0.7 ms → 2.5–3.3 ms) for no fewer chunks; a server's answers to queued requests
 * are separate batches, and those are what share a chunk.
 * Waiting delays only outputs, which wait for an ack anyway; the output rule is untouched (an
 * output leaves after the ack of its own marker). NOTE a held marker never waits on itself:
 * the acks it waits for are of markers already sent, and the backup acks those without
 * anything still held here.
 */
const MARKER_HOLD_MS = 1;
/**
 * Markers in flight before the clock holds the next. 2, not 1: with one, a burst's tail (the
 * rest of a console line, the answers computed in the same slice as the first) waited a whole
 * round trip for nothing, since it would have shared one chunk anyway (seq guest: as many
 * marker chunks with the clock as without); with two, it leaves at once, and a third batch
 * with outputs inside one round trip (a server with a queue of requests) is what waits.
 */
const MARKER_WINDOW = 2;
/** Entries held back at most, whatever their age. */
const MAX_UNSENT = 256;
const ACKED = { type: 'channel.acked' } as const;
/**
 * Batches run back to back for this long (ms) after an event-loop turn (BatchChain): under
 * HELD_SLICE_MS, so a sliced batch is always followed by a turn (the ack it waits for), and
 * only the tiny batches the guest ends itself chain.
 */
const CHAIN_MS = 0.02;

export interface NodeEvent {
  node: string;
  type: 'state' | 'divergence' | 'arbiter' | 'halted' | 'crashed' | 'error';
  detail: string;
}

export interface PrimaryNodeOptions {
  name: string;
  pairId: string;
  /** The pair generation whose arbiter key this node would claim if its backup went silent. */
  generation: number;
  /** A machine loaded and ready at an instruction boundary (fresh, or a backup gone live). */
  machine: Machine;
  arbiter: Arbiter;
  /** The logging channel to the backup; absent when the node runs alone. */
  channel?: PrimaryEnd;
  /** A backup that went live: it already won the arbiter, so it releases outputs directly. */
  startAlone?: boolean;
  /** Outputs the guest produced before this node took over (output numbering continues). */
  outputsSoFar?: number;
  /**
   * Outputs a backup produced while replaying that the old primary may not have released:
   * sent again once this node is live (DESIGN §3: duplicates allowed, losses never).
   */
  reissue?: NumberedOutput[];
  /** The guest's mtime when this node takes over, so the clock never runs backwards. */
  mtimeAt?: number;
  /**
   * A backup gone live: the CPU chart already running `machine`, paused in replay at a batch
   * boundary. This node adopts it; its `cpu.takeover` installs the recording env in place.
   */
  cpu?: CpuActor;
  timing?: Partial<FtTiming>;
  batch?: number;
  /**
   * How long batches chain without a turn (BatchChain; default CHAIN_MS). 0: every batch on
   * its own turn, for a primary whose backup replays in this thread: measured, chaining there
   * left the backup's acks behind the primary's batches (bench/ft.mjs, output-rule delay p50
   * 25 µs with a turn per batch, 5 ms chained).
   */
  chainMs?: number;
  /** The ack clock's bound (MARKER_HOLD_MS): how long a marker may wait for the ack of the one before it. */
  markerHoldMs?: number;
  /** How many sent markers may be unacknowledged before the ack clock holds the next (MARKER_WINDOW). */
  markerWindow?: number;
  /** Inspection of this node's chart (`--inspect`, the dashboard); the actor's id is the node's name. */
  inspect?: ActorOptions<typeof primaryMachine>['inspect'];
}

export interface PrimaryStats {
  icount: number;
  outputs: number;
  released: number;
  held: number;
  lagEntries: number;
  lagBytes: number;
  /** Age of the oldest unacknowledged entry (ms): how far the backup's replay lags, once it acks only what it replayed. */
  lagMs: number;
  entriesSent: number;
  outputDelay: { p50Ms: number; p99Ms: number; samples: number };
  /** Acks heard that advanced the acknowledged seq. */
  acks: number;
  /** Events delivered to this node's (primary) chart. */
  chartEvents: number;
  /** CPU batches run (each one step of the CPU chart). */
  batches: number;
  /** Chunks the ack clock sent: held markers that left when an ack arrived. */
  clockedSends: number;
  paused: boolean;
}

/**
 * The primary side of VMware-FT replication: runs the guest live, logs every input to the
 * backup, holds each output until the backup acknowledged the output's marker (output rule),
 * pauses when the backup lags too far (flow control), and claims the arbiter before it ever
 * releases an output without a backup. The protocol decisions are the primary chart's; this
 * class supplies its effects.
 */
export class PrimaryNode {
  readonly name: string;
  readonly machine: Machine;
  readonly actor: Actor<typeof primaryMachine>;
  private readonly released = new Subject<ReleasedOutput>();
  private readonly events = new Subject<NodeEvent>();
  readonly released$: Observable<ReleasedOutput> = this.released.asObservable();
  readonly events$: Observable<NodeEvent> = this.events.asObservable();

  private readonly timing: FtTiming;
  private readonly gate: OutputGate;
  private readonly log: SeqLog;
  private readonly subs: Subscription[] = [];
  /** Subscriptions to the current backup's channel, dropped when that backup is given up. */
  private channelSubs: Subscription[] = [];
  private channel: PrimaryEnd | undefined;
  private outputs: number;
  private pending: NumberedOutput[] = [];
  /** The host died or the arbiter was lost: nothing more runs, is sent or released. */
  private stopped = false;
  private readonly recording: RecordingEnv;
  /** The CPU chart running this node's machine, while it runs. */
  private cpu: Actor<typeof cpuMachine> | undefined;
  private readonly abort = new AbortController();
  private lastSendMs = 0;
  /**
   * Entries were handed to the channel since the running batch's first slice: its flush is a microtask
   * (the channel core coalesces a tick's sends), so a batch that sent between two slices (the
   * ack clock, from an ack polled there) ends at that slice and the chunk leaves.
   */
  private sentInBatch = false;
  /** The CPU batch running now went on past a slice (moreSlices said yes): its next slice is not its first. */
  private chained = false;
  /** Entries appended and not yet handed to the channel (see PLAIN_HOLD_MS), and since when. */
  private unsent: LogEntry[] = [];
  private spare: LogEntry[] = [];
  private unsentSinceMs = 0;
  private nextDigestMs = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private entriesSent = 0;
  /** Outputs released so far, counted from the guest's first output (they leave in order). */
  private releasedThrough: number;
  /** The released count the backup was last told, and when. */
  private releasedSent = -1;
  private lastProgressMs = 0;
  private readonly claims: ArbiterClaims;
  private readonly slicer: BatchSlicer;
  /** Seq of the newest output marker appended and not yet handed to the channel (-1: none). */
  private heldMarkerSeq = -1;
  /** Every marker held now marks network outputs only (the clock holds no other kind). */
  private heldNetOnly = true;
  /** When the oldest marker still held was appended. */
  private markerHeldSinceMs = 0;
  /** Seqs of the markers handed to the channel, oldest first; those acknowledged are dropped as seen. */
  private readonly sentMarkers: number[] = [];
  private readonly markerWindow: number;
  private readonly markerHoldMs: number;
  /** Per-node counts for the benches: acks heard (that advanced), events into this node's chart, CPU batches. */
  private readonly counts = { acks: 0, chartEvents: 0, batches: 0, clockedSends: 0 };

  constructor(private readonly opts: PrimaryNodeOptions) {
    if (!opts.channel && !opts.startAlone) throw new Error(`${opts.name}: a primary runs with a backup channel or alone after a won claim`);
    this.name = opts.name;
    this.machine = opts.machine;
    this.timing = withTiming(opts.timing);
    this.channel = opts.channel;
    this.outputs = opts.outputsSoFar ?? 0;
    this.markerHoldMs = opts.markerHoldMs ?? MARKER_HOLD_MS;
    this.markerWindow = opts.markerWindow ?? MARKER_WINDOW;
    this.releasedThrough = this.outputs;
    this.claims = new ArbiterClaims(opts.arbiter, opts.name, (detail) => this.note('arbiter', detail));
    this.slicer = new BatchSlicer(this.machine, opts.batch ?? DEFAULT_BATCH, HELD_SLICE_MS, () => this.gate.heldCount > 0);
    this.gate = new OutputGate((o) => this.emit(o, this.generation), () => performance.now());
    // Outputs a backup replayed before going live wait in the gate like any held output:
    // only the arbiter's yes (`releaseAllOutputs`) lets them out, never an ack.
    for (const o of opts.reissue ?? []) this.gate.hold(o.index, o.output, Infinity);
    this.log = new SeqLog((e) => {
      if (this.unsent.length === 0) this.unsentSinceMs = performance.now();
      if (e.type === 'output') {
        if (this.heldMarkerSeq < 0) this.markerHeldSinceMs = performance.now();
        this.heldMarkerSeq = e.seq;
        if (e.kind !== 'net') this.heldNetOnly = false;
      }
      this.unsent.push(e);
    });
    this.recording = new RecordingEnv((payload, icount) => this.log.append(payload, icount), {
      ...(opts.mtimeAt === undefined ? {} : { mtimeAt: opts.mtimeAt }),
    });
    // An adopted CPU switches to it by its own takeover; a fresh machine starts on it.
    if (!opts.cpu) this.machine.env = this.recording;
    this.machine.onOutput = (o: Output) => {
      this.pending.push({ index: this.outputs++, output: o });
      // End a long batch so the output's marker goes out now, not a batch later. A slice ends
      // soon anyway: the outputs of its burst share one marker, one send and one ack.
      if (!this.slicer.sliced) this.machine.hart.requestExit();
    };

    this.actor = createActor(
      primaryMachine.provide({
        actions: {
          releaseOutputs: () => this.gate.acked(this.channel?.ackedSeq ?? -1),
          releaseAllOutputs: ({ context }) => this.goAlone(context.generation),
          pauseVm: () => this.cpu?.send({ type: 'cpu.pause' }),
          resumeVm: () => this.cpu?.send({ type: 'cpu.resume' }),
          haltVm: () => {
            this.note('arbiter', `lost the test-and-set (${this.claims.lostDetail}): that replica is live; halting`);
            this.stop();
          },
        },
        actors: {
          // The chart's arbiter client retries and backs off; this supplies the call only.
          arbiterClient: arbiterClientMachine.provide({ actors: { testAndSet: this.claims.logic(() => opts.pairId) } }),
        },
      }),
      {
        input: {
          generation: opts.generation,
          claimRetry: { firstMs: this.timing.claimRetryMs, maxMs: this.timing.claimRetryMaxMs },
          start: opts.channel ? 'paired' : 'alone',
        },
        id: opts.name,
        ...(opts.inspect ? { inspect: opts.inspect } : {}),
      },
    );
    // The device charts report under this node's name (`primary.timer`, `backup.uart`, ...).
    if (opts.inspect) this.machine.inspectCharts(opts.inspect as never, `${opts.name}.`);
    this.actor.subscribe((s) => this.note('state', JSON.stringify(s.value)));
  }

  /** The chart's current state, e.g. `{"protected":"flowing"}` or `"alone"`. */
  get state(): unknown {
    return this.actor.getSnapshot().value;
  }

  /** The pair instance this node serves (DESIGN §3 Identity). */
  get pairId(): string {
    return this.opts.pairId;
  }

  get generation(): number {
    return this.actor.getSnapshot().context.generation;
  }

  /** Won the arbiter without a backup: outputs leave directly, nothing is logged. */
  private get alone(): boolean {
    // Read once per batch: `alone` is a top-level atomic state, so the value is the string
    // itself, and comparing it costs nothing where matches() resolves a state path.
    return this.actor.getSnapshot().value === 'alone';
  }

  /** Run the guest until it halts, faults, or this node stops or crashes. */
  async run(): Promise<RunOutcome> {
    // The chart starts on the road its input names: paired, or alone after a won claim.
    this.actor.start();
    if (this.channel) this.watchChannel(this.channel);
    this.heartbeat = setInterval(() => this.beat(), this.timing.heartbeatMs);
    this.nextDigestMs = performance.now() + this.timing.digestEveryMs;
    try {
      const haltCode = this.machine.hart.haltCode;
      // A backup may go live on a guest that already powered off in replay: only its outputs remain.
      const outcome: RunOutcome = haltCode !== undefined
        ? { reason: 'halt', code: haltCode, icount: this.machine.icount, seconds: 0 }
        : await this.runCpu();
      if (outcome.reason === 'halt' || outcome.reason === 'fault') await this.finish(outcome);
      return outcome;
    } finally {
      this.teardown();
    }
  }

  /**
   * The guest runs under this node's CPU chart (DESIGN §4): one batch per chart step, flow
   * control as `cpu.pause`/`cpu.resume`, the mode 'record' since every input is logged.
   */
  private runCpu(): Promise<RunOutcome> {
    // A turn per batch (chainMs 0: a backup in this thread must run between batches) takes no chain.
    const chain = this.opts.chainMs === 0 ? undefined : new BatchChain(this.opts.chainMs ?? CHAIN_MS);
    const { actor, done } = runOnCpuActor(this.machine, {
      mode: 'record',
      signal: this.abort.signal,
      onBatch: (exit) => {
        this.slicer.ended();
        this.counts.batches++;
        this.afterBatch(exit);
        this.chained = false;
      },
      id: `${this.name}.cpu`,
      ...(this.opts.cpu ? { adopt: { cpu: this.opts.cpu, env: this.recording } } : {}),
      // A batch's first slice: what was sent before it (at the last batch's end, in a turn) has left.
      batch: chain === undefined ? this.slicer.budget : () => {
        if (!this.chained) this.sentInBatch = false;
        return this.slicer.budget();
      },
      // An adopted CPU keeps the schedule its backup made (a chain, or a turn per batch for a
      // backup that replayed in its primary's thread: its joiners replay in this thread too).
      ...(chain === undefined ? { yieldMs: 0 } : { schedule: chain.schedule, moreSlices: () => this.moreSlices(chain) }),
      ...(this.opts.inspect ? { inspect: this.opts.inspect as never } : {}),
    });
    this.cpu = actor;
    if (this.actor.getSnapshot().matches({ protected: 'throttled' })) actor.send({ type: 'cpu.pause' });
    return done;
  }

  /**
   * The CPU actor's `moreSlices`: whether the batch goes on with another slice, with no
   * `cpu.batchEnded`, no `onBatch` and no microtask hop in between (the CPU actor has already
   * run the thread's pollers and seen its chart still running: a pause, the throttle's
   * included, ends the batch at this slice). It goes on only where the batch's end has
   * nothing to do that cannot wait for the chain's end:
   * - no output was produced in the slice: its marker is logged at the batch's end, at the
   *   icount where the slice stopped, and it waits for its ack from there (output rule);
   * - the chain stays within `chainMs` of this node's last event-loop turn, exactly where a
   *   chain of batches (BatchChain) would have gone on as a microtask: the turns (acks read
   *   from a socket, heartbeats, timers, the service's sockets) come when they came;
   * - the entries held back are below MAX_UNSENT (the batch's end sends them);
   * - nothing was handed to the channel during the batch (see `sentInBatch`: the ack clock
   *   sends from an ack the poll brought, and that chunk leaves at the batch's end).
   * The CPU actor asks only after a slice that ended on its budget (the slicer's or the
   * env's next look at the clock) or at the guest's request; wfi, halt and faults end the
   * batch. Digests, heartbeats and the held entries' sends wait for the batch's end, which
   * is at most a chain away. A CPU adopted from a backup keeps the backup's own rule (false
   * once that backup went live).
   */
  private moreSlices(chain: BatchChain): boolean {
    this.slicer.sliceEnded();
    this.chained = this.pending.length === 0 && !this.sentInBatch && !this.stopped && this.unsent.length < MAX_UNSENT && chain.chaining();
    return this.chained;
  }

  /**
   * Re-protection (DESIGN §3): a new backup joins this running primary. Between two batches
   * the machine's state goes to it as a snapshot entry, followed by the output count and the
   * released count it continues from; logging goes on from that icount. The guest stops only
   * for the snapshot copy (a pre-copy of dirty pages would shorten even that). The pair is
   * protected again once the backup has acknowledged the snapshot.
   */
  attachBackup(channel: PrimaryEnd): void {
    if (this.channel || this.stopped) throw new Error(`${this.name}: cannot take a backup now (${JSON.stringify(this.state)})`);
    // Entries of the time alone go nowhere: the joiner's log starts with the snapshot.
    this.sendLog();
    this.sentMarkers.length = 0;
    this.channel = channel;
    const icount = this.machine.icount;
    const snapSeq = this.log.append({ type: 'snapshot', data: packSnapshot(this.machine) }, icount);
    this.log.append({ type: 'output', kind: 'console', count: this.outputs }, icount);
    this.progress();
    this.watchChannel(channel);
    this.tell({ type: 'backup.joined' });
    this.channelSubs.push(
      channel.acked$.pipe(filter((seq) => seq >= snapSeq), take(1)).subscribe(() => {
        this.note('state', `backup caught up: acknowledged the snapshot at icount ${icount}`);
        this.tell({ type: 'backup.caughtUp' });
      }),
    );
  }

  /** The channel's own chart (in its core) decides connect, close and back-pressure; this follows it. */
  private watchChannel(ch: PrimaryEnd): void {
    this.channelSubs.push(
      ch.acked$.subscribe((seq) => this.acked(seq)),
      ch.pressure$.subscribe((p) => this.tell({ type: p ? 'channel.highWater' : 'channel.lowWater' })),
      ch.events$.subscribe((e) => {
        // A crashed or stopped node has no say: its chart would claim on the channel its own end broke.
        if (e.type === 'channel.failed' && !this.stopped) this.tell({ type: 'channel.failed' });
      }),
      watchPeer(ch.acked$, this.timing.suspectMs, this.timing.confirmMs, (e) => this.tell(e), this.timing.suspectMaxMs, undefined, peerBeats(ch)),
    );
  }

  /**
   * An ack arrived (everything up to `seq` is with the backup). The chart hears of it when it
   * covers a held output: whether that output may leave is its decision (no ack is trusted
   * while the backup is suspect). An ack that covers none (a heartbeat's, a chunk without a
   * marker) has nothing to decide and costs no chart step. Then the ack clock: the markers
   * that waited for this ack leave now, as one chunk.
   */
  private acked(seq: number): void {
    this.counts.acks++;
    if (this.gate.releasable(seq)) this.tell(ACKED);
    // Dropped here, on every ack: a console guest's markers are never held, so nothing else
    // would look at (and trim) the list they are added to.
    this.dropAckedMarkers(seq);
    if (this.heldMarkerSeq >= 0 && !this.clockHolds(seq) && !this.stopped) {
      this.counts.clockedSends++;
      this.sendLog();
    }
  }

  /** An event for this node's chart (counted: the benches report chart steps per answer). */
  private tell(e: PrimaryEvent): void {
    this.counts.chartEvents++;
    this.actor.send(e);
  }

  /** Forget the sent markers the backup has acknowledged (up to `ackedSeq`). */
  private dropAckedMarkers(ackedSeq: number): void {
    const sent = this.sentMarkers;
    while (sent.length > 0 && sent[0]! <= ackedSeq) sent.shift();
  }

  /**
   * The ack clock holds network markers now: as many as MARKER_WINDOW are unacknowledged up
   * to `ackedSeq`, or the guest has network input still to read (its answers are coming).
   */
  private clockHolds(ackedSeq: number): boolean {
    return this.markersFull(ackedSeq) || this.machine.io?.netInputInHand === true;
  }

  /** As many markers as MARKER_WINDOW are sent and not acknowledged up to `ackedSeq`. */
  private markersFull(ackedSeq: number): boolean {
    this.dropAckedMarkers(ackedSeq);
    return this.sentMarkers.length >= this.markerWindow;
  }

  /** Outputs the guest produced that have not left yet: held by the output rule, or not yet marked. */
  unreleased(): number {
    return this.gate.heldCount + this.pending.length;
  }

  /** Fail-stop: the host died. Nothing more is sent or released. */
  crash(why = 'killed'): void {
    this.gate.discard();
    this.note('crashed', `${why} at icount ${this.machine.icount}`);
    this.stop();
  }

  stats(): PrimaryStats {
    const lag = this.channel?.lag;
    return {
      icount: this.machine.icount,
      outputs: this.outputs,
      released: this.gate.released,
      held: this.gate.heldCount,
      lagEntries: lag?.entries ?? 0,
      lagBytes: lag?.bytes ?? 0,
      lagMs: lag?.ms ?? 0,
      entriesSent: this.entriesSent,
      outputDelay: this.gate.latency(),
      acks: this.counts.acks,
      chartEvents: this.counts.chartEvents,
      batches: this.counts.batches,
      clockedSends: this.counts.clockedSends,
      paused: this.actor.getSnapshot().matches({ protected: 'throttled' }),
    };
  }

  /**
   * Between two batches: mark the batch's outputs and hold them (output rule), log a digest
   * now and then, and a heartbeat. Each batch runs on its own event-loop turn (the CPU actor
   * schedules it), so an ack that is due arrives before the next one.
   */
  private afterBatch(exit: Exit): void {
    if (this.stopped) return;
    const icount = this.machine.icount;
    const alone = this.alone;
    let marked = false;
    if (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      if (alone) {
        const generation = this.generation;
        for (const o of batch) this.emit(o, generation);
      } else {
        const seq = this.log.append({ type: 'output', kind: batch[batch.length - 1]!.output.kind, count: this.outputs }, icount);
        for (const o of batch) this.gate.hold(o.index, o.output, seq);
        marked = true;
      }
    }
    if (exit === Exit.Halt || exit === Exit.Fault) {
      this.sendLog();
      if (marked) this.gate.acked(this.channel?.ackedSeq ?? -1);
      return;
    }
    const now = performance.now();
    if (!alone && now >= this.nextDigestMs) {
      this.log.append({ type: 'digest', digest: this.machine.digest() }, icount);
      this.nextDigestMs = now + this.timing.digestEveryMs;
    }
    // A heartbeat when the log was quiet; and, under steady traffic, whenever the released
    // count moved: it bounds what a backup going live must re-issue (DESIGN §3 duplicates).
    // Not after a batch the guest ended itself: the next one follows at once (and beat() is there).
    const quiet = now - this.lastSendMs >= this.timing.heartbeatMs;
    const releaseNews = this.releasedThrough !== this.releasedSent && now - this.lastProgressMs >= this.timing.heartbeatMs;
    if (!alone && exit !== Exit.Request && (quiet || releaseNews)) this.progress();
    else if (this.sendDue(exit, now)) this.sendLog();
    // The ack may already be in (a synchronous channel): release what it covers.
    if (marked) this.gate.acked(this.channel?.ackedSeq ?? -1);
  }

  /** Whether the entries held back leave at the end of this batch (see PLAIN_HOLD_MS, MARKER_HOLD_MS). */
  private sendDue(exit: Exit, now: number): boolean {
    const n = this.unsent.length;
    if (n === 0) return false;
    if (n >= MAX_UNSENT) return true;
    // A marker leaves now unless the ack clock holds it (see clockHolds) and the guest runs on:
    // one that sleeps (wfi) has nothing more to say that could share it.
    if (this.heldMarkerSeq >= 0) return !this.heldNetOnly || exit === Exit.Wfi || now - this.markerHeldSinceMs >= this.markerHoldMs || !this.clockHolds(this.channel?.ackedSeq ?? Infinity);
    // The guest ended the batch itself and runs on: its answer's marker may be a batch away.
    return exit !== Exit.Request && now - this.unsentSinceMs >= PLAIN_HOLD_MS;
  }

  /** Hand the entries held back to the channel: one chunk (the channel coalesces a tick's sends). */
  private sendLog(): void {
    const out = this.unsent;
    const n = out.length;
    if (n === 0) return;
    this.lastSendMs = performance.now();
    this.sentInBatch = true;
    this.entriesSent += n;
    // Swapped first: a synchronous channel's ack may run this node's effects inside send().
    this.unsent = this.spare;
    const ch = this.channel;
    if (this.heldMarkerSeq >= 0) {
      // Alone, no ack will come for it (a joiner starts the list afresh).
      if (ch) this.sentMarkers.push(this.heldMarkerSeq);
      this.heldMarkerSeq = -1;
      this.heldNetOnly = true;
    }
    if (ch) for (let i = 0; i < n; i++) ch.send(out[i]!);
    out.length = 0;
    this.spare = out;
  }

  private progress(): void {
    this.releasedSent = this.releasedThrough;
    this.lastProgressMs = performance.now();
    this.log.append({ type: 'progress', released: this.releasedThrough }, this.machine.icount);
    this.sendLog();
  }

  /** Heartbeats while the guest sleeps or computes a long batch (only between batches: JS is single-threaded). */
  private beat(): void {
    if (this.stopped || this.alone) return;
    const now = performance.now();
    if (now - this.lastSendMs >= this.timing.heartbeatMs) this.progress();
    // The ack clock's bound holds while the guest sleeps (no batch ends to look at it).
    else if (this.heldMarkerSeq >= 0 && now - this.markerHeldSinceMs >= this.markerHoldMs) this.sendLog();
  }

  private async finish(outcome: RunOutcome): Promise<void> {
    if (!this.alone) this.log.append({ type: 'end', code: outcome.code ?? (outcome.reason === 'fault' ? 1 : 0) }, this.machine.icount);
    this.sendLog();
    // The power-off is an output too: the run is over only once everything is out. (A backup
    // gone live may find its guest already powered off: its re-issued outputs are held too.)
    while (!this.stopped && this.gate.heldCount > 0) {
      await new Promise((r) => setTimeout(r, 1));
    }
    if (this.stopped) return;
    if (!this.alone) {
      // Tell the backup everything is out, so it finishes instead of re-issuing the tail.
      this.progress();
      this.channel?.close();
    }
    this.note('halted', outcome.reason === 'fault' ? `guest fault: ${outcome.fault?.message}` : `guest exited with code ${outcome.code ?? 0}`);
    this.tell({ type: 'vm.halted' });
  }

  private emit(o: NumberedOutput, generation: number): void {
    // Released: a frame goes to the network, a disk write to the shared disk (its completion
    // comes back as a logged input). Console and power-off go only to the subscribers.
    this.machine.io?.execute(o.output);
    this.releasedThrough = o.index + 1;
    this.released.next({ ...o, node: this.name, generation });
  }

  /** `generation` is the chart's, already advanced past the key this node won. */
  private goAlone(generation: number): void {
    for (const sub of this.channelSubs) sub.unsubscribe();
    this.channelSubs = [];
    this.channel?.close();
    this.channel = undefined;
    // NOTE inside a chart action the actor's snapshot still holds the generation just won:
    // the outputs released here are labelled with the action's context instead.
    this.gate.releaseAll((o) => this.emit(o, generation));
    this.note('arbiter', `won generation ${generation - 1}: live as generation ${generation}, without a backup`);
  }

  private note(type: NodeEvent['type'], detail: string): void {
    this.events.next({ node: this.name, type, detail });
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    // A CPU paused by flow control must run on to see the abort.
    if (this.cpu?.getSnapshot().status === 'active') this.cpu.send({ type: 'cpu.resume' });
  }

  private teardown(): void {
    this.stopped = true;
    clearInterval(this.heartbeat);
    for (const s of [...this.subs, ...this.channelSubs]) s.unsubscribe();
    this.actor.stop();
    this.released.complete();
    this.events.complete();
  }
}
