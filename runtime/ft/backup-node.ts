import { Subject, filter, from, take, type Observable, type Subscription } from 'rxjs';
import type { LogEntry } from '../log/entry.js';
import { createActor, type Actor, type ActorOptions } from 'xstate';
import { backupMachine } from '../../machines/backup.machine.js';
import { arbiterClientMachine } from '../../machines/arbiter-client.machine.js';
import type { Machine } from '../machine.js';
import { DivergenceError, ReplayEnv } from '../env/replay.js';
import { RefusedError, type BackupEnd } from '../channel/channel.js';
import type { Arbiter } from '../arbiter/arbiter.js';
import { ArbiterClaims } from './arbiter-claims.js';
import { GoLivePhases } from './go-live-phases.js';
import { createCpuActor, type CpuActor } from '../cpu-actor.js';
import { BatchChain, BatchSlicer } from './batch-slice.js';
import type { NumberedOutput } from './output-gate.js';
import { PrimaryNode, type NodeEvent } from './primary-node.js';
import { watchPeer } from './suspicion.js';
import { peerBeats } from '../channel/heartbeat-shared.js';
import { DEFAULT_HIGH_WATER_MS } from '../channel/send-window.js';
import { ReplayBacklog } from './replay-backlog.js';
import { withTiming, type FtTiming } from './timing.js';
import { restoreJoinSnapshot } from './snapshot-wire.js';
import type { DiskBackend, NetBackend } from '../io/backend.js';

export interface BackupNodeOptions {
  name: string;
  /**
   * The pair instance and generation, for channels that carry no admission (the embedded
   * ones); over TCP the primary's hello names both (DESIGN §3 Identity).
   */
  pairId?: string;
  generation?: number;
  /** Booted from the same image as the primary (or restored from its snapshot). */
  machine: Machine;
  channel: BackupEnd;
  arbiter: Arbiter;
  timing?: Partial<FtTiming>;
  batch?: number;
  /**
   * Wall time of a replay batch, ms (default REPLAY_SLICE_MS): the backup reads its channel,
   * and acks, between batches. 0: whole batches, chained for up to 1 ms a turn, for a backup
   * in its primary's thread, whose acks need no turn and which must not cede the thread to
   * the primary's long batches.
   */
  replaySliceMs?: number;
  /**
   * Sliced batches follow each other without an event-loop turn for this long (ms; default
   * half a slice: a turn per slice). Longer only for a channel polled between batches (a
   * worker's MessagePort, `pollBetweenBatches`), which delivers and acks without a turn.
   */
  chainMs?: number;
  /**
   * Re-protection: this backup joins a running primary, so `machine` is blank and the log
   * starts with a snapshot entry to restore (DESIGN §3). Otherwise both booted from one image.
   */
  joining?: boolean;
  /**
   * The host's disk and network, connected only if this backup goes live; then every disk
   * request it saw without a logged completion is issued again (DESIGN §3 go-live).
   */
  io?: { disk?: DiskBackend; net?: NetBackend };
  /**
   * The replay may fall this far behind (ms: the oldest entry received and not yet replayed)
   * before acks cover only what was replayed (ReplayBacklog). Default: half the primary's
   * time mark, DEFAULT_HIGH_WATER_MS.
   */
  ackLagMs?: number;
  /** Inspection of this node's charts, the backup's and, after go-live, its primary's. */
  inspect?: ActorOptions<typeof backupMachine>['inspect'];
}

export type BackupOutcome =
  | { reason: 'live'; primary: PrimaryNode }
  | { reason: 'finished'; code: number }
  /** refused: not admitted to the pair; unattached: no primary answered. Neither ran the guest. */
  | { reason: 'halted' | 'diverged' | 'stopped' | 'refused' | 'unattached'; detail: string };

export interface BackupStats {
  icount: number;
  horizon: number;
  pendingEntries: number;
  lagInstructions: number;
  /** How long the oldest entry received and not yet replayed has waited (ms). */
  lagMs: number;
  outputs: number;
}

const DEFAULT_BATCH = 1_000_000;
/**
 * The backup reads its socket or port, and so acks, only when its event loop turns: every
 * replay batch gets its own turn and lasts about this long (ms), so an arrival batch is
 * acked within about this much. The primary's output rule waits for that ack.
 */
const REPLAY_SLICE_MS = 0.04;
/** Unsliced (a backup in its primary's thread): batches follow each other this long (ms) before a turn. */
const SHARED_THREAD_YIELD_MS = 1;

/**
 * The backup side: replays the primary's log in lockstep, acknowledging each entry as it
 * arrives (so the primary may release outputs), watches for the primary's silence, and when
 * it is confirmed, claims the arbiter, replays everything it has, and goes live as a new
 * primary (DESIGN §3). The decisions are the backup chart's and its CPU chart's; this class
 * supplies their effects. The guest replays under the CPU chart in replay mode; the drain is
 * its `cpu.runUntil` to the log's horizon, and go-live hands the same machine and CPU actor,
 * paused there, to the new primary, whose `cpu.takeover` switches the env in place.
 */
export class BackupNode {
  readonly name: string;
  readonly machine: Machine;
  readonly env: ReplayEnv;
  readonly actor: Actor<typeof backupMachine>;
  /** The CPU chart replaying this node's machine; after go-live the new primary's. */
  readonly cpu: CpuActor;
  private readonly events = new Subject<NodeEvent>();
  readonly events$: Observable<NodeEvent> = this.events.asObservable();

  private readonly timing: FtTiming;
  private readonly subs: Subscription[] = [];
  private entriesSub: Subscription | undefined;
  private outputs = 0;
  /** Outputs produced in replay that the primary had not yet reported released. */
  private replayed: NumberedOutput[] = [];
  private releasedHint = 0;
  private stopped = false;
  private draining = false;
  private cpuStarted = false;
  /** The guest powered off or faulted in replay (the CPU chart halted or faulted). */
  private guestStopped = false;
  private finished!: () => void;
  /** Not a divergence: a fault of this runtime, which run() rethrows. */
  private failure: unknown;
  private readonly done = new Promise<void>((resolve) => { this.finished = resolve; });
  private readonly claims: ArbiterClaims;
  /** When each step of a takeover happened; the host adds its own (backends, first answer). */
  readonly phases = new GoLivePhases();
  /** Entries received since the last delivery to the chart, and the batch being delivered. */
  private inbox: LogEntry[] = [];
  private arrived: LogEntry[] = [];
  private deliveryQueued = false;
  /** The newest entry handed to the replay env. */
  private appliedSeq = -1;
  /** What an ack may cover: what was received, or only what was replayed once the replay lags. */
  private readonly backlog: ReplayBacklog;
  private ackedSeq = -1;
  /** The pair instance, known once admitted (or given, for the embedded channels). */
  private pairId: string;
  private generation: number;
  /** Why the primary turned this backup away, or why no primary answered. */
  private turnedAway = '';
  private outcome: BackupOutcome | undefined;
  private divergence: DivergenceError | undefined;
  /** Joining: false until the snapshot has been restored; then the output count is still to come. */
  private loaded: boolean;
  private awaitingOutputBase = false;

  constructor(private readonly opts: BackupNodeOptions) {
    this.name = opts.name;
    this.machine = opts.machine;
    this.timing = withTiming(opts.timing);
    this.loaded = !opts.joining;
    this.pairId = opts.pairId ?? '';
    this.generation = opts.generation ?? 1;
    this.claims = new ArbiterClaims(opts.arbiter, opts.name, (detail) => this.note('arbiter', detail));
    this.backlog = new ReplayBacklog(opts.ackLagMs ?? DEFAULT_HIGH_WATER_MS / 2);
    this.env = new ReplayEnv({ digest: (m) => m.digest(), outputCount: () => this.outputs });
    this.machine.env = this.env;
    this.machine.onOutput = (output) => {
      const index = this.outputs++;
      if (index >= this.releasedHint) this.replayed.push({ index, output });
    };
    // Short slices while the primary may still send; the drain to the horizon runs whole batches.
    const sliceMs = opts.replaySliceMs ?? REPLAY_SLICE_MS;
    const slicer = new BatchSlicer(this.machine, opts.batch ?? DEFAULT_BATCH, sliceMs, () => sliceMs > 0 && !this.draining);
    const chainMs = opts.chainMs ?? sliceMs / 2;
    // A channel polled between slices (a worker's port, chained longer than a slice): the
    // slices of one chain are one batch, and so one chart event, until the poll brings entries.
    const polled = sliceMs > 0 && chainMs > sliceMs;
    this.cpu = createCpuActor(this.machine, {
      batch: slicer.budget,
      // Half a slice: a whole slice is followed by a turn (the socket, the acks); the guest's tiny batches chain.
      ...(sliceMs > 0 ? { schedule: new BatchChain(chainMs).schedule, softBatch: true } : { yieldMs: SHARED_THREAD_YIELD_MS }),
      // NOTE entries the poll received wait for their delivery (a microtask: the chart's
      // `channel.entries`, the replay env's push, the ack) until the batch ends: so it ends.
      ...(polled ? { moreSlices: () => !this.deliveryQueued && !this.stopped && slicer.more(chainMs) } : {}),
      onBatch: () => {
        slicer.ended();
        // While acks wait for the replay, the replay's progress is worth an ack (the chart's).
        if (this.backlog.held && !this.draining && !this.stopped && this.backlog.ackable(this.machine.icount, performance.now()) > this.ackedSeq) {
          this.actor.send({ type: 'replay.advanced' });
        }
      },
      id: `${opts.name}.cpu`,
      ...(opts.inspect ? { inspect: opts.inspect as never } : {}),
      onHalt: () => this.onGuestStopped(),
      // A replay mismatch is the env's error; a guest fault happened on the primary too.
      onFault: (_message, error) => (error === undefined ? this.onGuestStopped() : this.diverge(error)),
    });
    this.actor = createActor(
      backupMachine.provide({
        actions: {
          applyEntries: () => this.applyEntries(),
          // Acknowledge on receipt (VMware FT): an entry received is replayed before any go-live.
          // Only what was replayed while the replay lags (ReplayBacklog): the primary pauses.
          sendAck: () => {
            const upTo = this.backlog.ackable(this.machine.icount, performance.now());
            if (upTo > this.ackedSeq) {
              this.ackedSeq = upTo;
              this.opts.channel.ack(upTo);
            }
          },
          haltVm: () => {
            this.note('arbiter', `lost the test-and-set (${this.claims.lostDetail}): the primary lives on; halting`);
            this.finishWith({ reason: 'halted', detail: `lost the arbiter: ${this.claims.lostDetail}` });
          },
          reportRefusal: () => {
            this.note('state', `refused: ${this.turnedAway}`);
            this.finishWith({ reason: 'refused', detail: this.turnedAway });
          },
          watchPrimary: () => {
            this.subs.push(watchPeer(this.opts.channel.entries$, this.timing.suspectMs, this.timing.confirmMs, (e) => this.actor.send(e), this.timing.suspectMaxMs, undefined, peerBeats(this.opts.channel)));
          },
          drainLog: () => this.drain(),
          goLive: () => this.goLive(),
          reportDivergence: () => {
            this.note('divergence', this.divergence?.message ?? 'digest mismatch');
            this.finishWith({ reason: 'diverged', detail: this.divergence?.message ?? 'digest mismatch' });
          },
        },
        actors: {
          // The chart's arbiter client retries and backs off; this supplies the call only. The
          // pair instance is runtime data, known once the primary admitted this backup.
          arbiterClient: arbiterClientMachine.provide({ actors: { testAndSet: this.claims.logic(() => this.pairId) } }),
        },
      }),
      {
        input: { generation: opts.generation, claimRetry: { firstMs: this.timing.claimRetryMs, maxMs: this.timing.claimRetryMaxMs } },
        id: opts.name,
        ...(opts.inspect ? { inspect: opts.inspect } : {}),
      },
    );
    // The device charts report under this node's name (`primary.timer`, `backup.uart`, ...).
    if (opts.inspect) this.machine.inspectCharts(opts.inspect as never, `${opts.name}.`);
    this.actor.subscribe((s) => {
      this.phases.chartState(s.value);
      this.note('state', JSON.stringify(s.value));
      if (s.value === 'abandoned') this.finishWith({ reason: 'stopped', detail: s.context.synced ? 'the primary went away' : 'the primary went away before the snapshot arrived' });
      if (s.value === 'unattached') this.finishWith({ reason: 'unattached', detail: this.turnedAway });
    });
  }

  get state(): unknown {
    return this.actor.getSnapshot().value;
  }

  stats(): BackupStats {
    return {
      icount: this.machine.icount,
      horizon: this.env.horizon,
      pendingEntries: this.env.pending,
      lagInstructions: Math.max(0, this.env.horizon - this.machine.icount),
      lagMs: this.backlog.age(performance.now()),
      outputs: this.outputs,
    };
  }

  /** Replay until this node goes live, finishes with the primary, halts, diverges or stops. */
  async run(): Promise<BackupOutcome> {
    const ch = this.opts.channel;
    this.actor.start();
    this.entriesSub = ch.entries$.subscribe((e) => {
      this.inbox.push(e);
      if (!this.deliveryQueued) {
        this.deliveryQueued = true;
        queueMicrotask(() => this.deliver());
      }
    });
    this.subs.push(ch.events$.subscribe((e) => {
      // A refusal arrives as the channel's failure too: the admission answers it. A node that
      // crashed or stopped has no say: its chart would claim on the channel its own end broke.
      if (e.type === 'channel.failed' && !(e.error instanceof RefusedError) && !this.stopped) {
        this.turnedAway ||= e.error.message;
        this.actor.send({ type: 'channel.failed' });
      }
    }));
    this.actor.send({ type: 'backup.start' });
    this.admit();
    // Joining: the CPU starts once the snapshot is restored.
    if (this.loaded && !this.stopped) this.startCpu();
    try {
      await this.done;
    } finally {
      this.teardown();
    }
    if (this.failure !== undefined) throw this.failure;
    return this.outcome ?? { reason: 'stopped', detail: 'stopped' };
  }

  /**
   * One `channel.entries` event per arrival batch (what one socket chunk or one tick brought),
   * never one per entry. The chart decides whether the batch is applied and acknowledged:
   * while the primary may still be the primary, yes; once the arbiter is won, never (a batch
   * it ignores is dropped here, unapplied and unacknowledged).
   */
  private deliver(): void {
    this.deliveryQueued = false;
    // NOTE the log may follow the primary's hello in one chunk, ahead of the admission's
    // promise: entries that come before the chart is admitted wait here, as in a socket buffer.
    const snapshot = this.actor.getSnapshot();
    if (snapshot.matches('idle') || snapshot.matches('handshaking')) return;
    this.arrived = this.inbox;
    this.inbox = [];
    if (this.actor.getSnapshot().status === 'active') this.actor.send({ type: 'channel.entries' });
    this.arrived = [];
  }

  /** The chart's `applyEntries`: hand the batch to the replay env (restoring a joiner's snapshot first). */
  private applyEntries(): void {
    const now = performance.now();
    for (const e of this.arrived) {
      if (this.stopped) return;
      if (!this.loaded) {
        if (e.type !== 'snapshot') return this.diverge(new DivergenceError(e.seq, e.icount, 'a snapshot to join from', e.type));
        // The snapshot brings the primary's NAT table too: its clients from before the join.
        restoreJoinSnapshot(this.machine, e.data, this.opts.io?.net);
        this.loaded = true;
        this.awaitingOutputBase = true;
        this.actor.send({ type: 'snapshot.loaded' });
      } else if (this.awaitingOutputBase && e.type === 'output') {
        // The primary's outputs so far: this replica numbers the next ones as it does.
        this.outputs = e.count;
        this.releasedHint = e.count;
        this.awaitingOutputBase = false;
      }
      try {
        this.env.push(e);
      } catch (err) {
        this.diverge(err);
        return;
      }
      if (e.type === 'progress') this.noteReleased(e.released);
      this.appliedSeq = e.seq;
      this.backlog.received(e.seq, e.icount, now);
    }
    if (this.loaded && !this.cpuStarted && !this.stopped) this.startCpu();
    // The guest already stopped in replay: these entries may hold the primary's `end`.
    if (this.guestStopped && !this.draining && !this.stopped) this.consumeEnd();
  }

  private startCpu(): void {
    this.cpuStarted = true;
    this.cpu.start();
    this.cpu.send({ type: 'cpu.start', mode: 'replay' });
  }

  /**
   * Ask to join (DESIGN §3 Membership). The embedded channels carry no handshake: their
   * backup is built together with its primary, from the same image, so it is admitted as such.
   */
  private admit(): void {
    const ch = this.opts.channel;
    if (!ch.admission) {
      this.actor.send({ type: 'primary.admitted', joining: this.opts.joining === true, generation: this.generation });
      return;
    }
    ch.admission.then(
      (a) => {
        if (this.stopped) return;
        if ((a.mode === 'join') !== (this.opts.joining === true)) {
          this.turnedAway = `the primary admitted this backup to ${a.mode}, but it asked to ${this.opts.joining ? 'join' : 'boot'}`;
          this.actor.send({ type: 'primary.refused' });
          return;
        }
        this.pairId = a.instance;
        this.generation = a.generation;
        this.note('state', `admitted to pair ${a.instance} (${a.mode}, generation ${a.generation}, ${a.memoryMiB} MiB)`);
        this.actor.send({ type: 'primary.admitted', joining: a.mode === 'join', generation: a.generation });
        if (this.inbox.length > 0) this.deliver();
      },
      (e: unknown) => {
        this.turnedAway = (e as Error).message;
        this.actor.send(e instanceof RefusedError ? { type: 'primary.refused' } : { type: 'channel.failed' });
      },
    );
  }

  /** The pair instance this backup belongs to ('' until admitted). */
  get pair(): string {
    return this.pairId;
  }

  /**
   * Outputs this replica would have to release if it stopped now: none while a primary is
   * responsible for them; while claiming, those the primary never reported released.
   */
  unreleased(): number {
    const s = this.actor.getSnapshot();
    return s.matches('claiming') || s.matches('goingLive') ? this.replayed.filter((o) => o.index >= this.releasedHint).length : 0;
  }

  /** Fail-stop: the backup's host died. */
  crash(why = 'killed'): void {
    this.note('crashed', `${why} at icount ${this.machine.icount}`);
    this.finishWith({ reason: 'stopped', detail: 'crashed' });
  }

  /** The CPU chart halted or faulted in replay, where the primary's guest did. */
  private onGuestStopped(): void {
    this.guestStopped = true;
    // Wait for the primary's `end`, and for word that every output was released, or go
    // live to release them itself.
    if (this.draining) this.drained();
    else this.consumeEnd();
  }

  /**
   * The chart's `drainLog`: from here the chart takes no entries, so what was acked is all
   * the old primary may have released, and all this side replays. The CPU runs until the
   * log's horizon (`cpu.runUntil`) and pauses there, at a batch boundary, for the takeover.
   */
  private drain(): void {
    this.draining = true;
    if (this.guestStopped) {
      this.drained();
      return;
    }
    this.subs.push(from(this.cpu).pipe(filter((s) => s.matches('paused')), take(1)).subscribe(() => this.atHorizon()));
    this.cpu.send({ type: 'cpu.runUntil', icount: this.env.horizon });
  }

  /** Paused at the horizon: apply what the log holds at this very icount, then go live. */
  private atHorizon(): void {
    const m = this.machine;
    try {
      this.env.deliverDue(m);
    } catch (err) {
      this.diverge(err);
      return;
    }
    if (!this.env.drained(m)) {
      this.diverge(new DivergenceError(this.env.appliedSeq + 1, m.icount, 'every received entry replayed', `${this.env.pending} entries left at the horizon`));
      return;
    }
    this.drained();
  }

  /** Apply the entries that sit at the halted machine's icount, and finish once `end` was among them. */
  private consumeEnd(): void {
    try {
      this.env.deliverDue(this.machine);
    } catch (err) {
      this.diverge(err);
      return;
    }
    const end = this.env.ended;
    if (!end || this.releasedHint < this.outputs) return;
    this.note('halted', `primary's guest exited with code ${end.code}; replay reached the same end`);
    this.actor.send({ type: 'primary.ended' });
    this.finishWith({ reason: 'finished', code: end.code });
  }

  private drained(): void {
    this.actor.send({ type: 'replay.drained' });
  }

  private goLive(): void {
    this.phases.mark('replayed');
    this.opts.channel.close();
    if (this.opts.io) this.machine.io?.attach(this.opts.io);
    const reissue = this.replayed.filter((o) => o.index >= this.releasedHint);
    this.replayed = [];
    const primary = new PrimaryNode({
      name: this.name,
      pairId: this.pairId,
      generation: this.actor.getSnapshot().context.generation,
      machine: this.machine,
      arbiter: this.opts.arbiter,
      startAlone: true,
      outputsSoFar: this.outputs,
      mtimeAt: this.env.lastMtime,
      reissue,
      // The same machine and CPU chart, paused at the horizon: its run takes them over.
      cpu: this.cpu,
      timing: this.timing,
      ...(this.opts.batch === undefined ? {} : { batch: this.opts.batch }),
      ...(this.opts.inspect ? { inspect: this.opts.inspect } : {}),
    });
    this.note('state', `live at icount ${this.machine.icount}; re-issuing ${reissue.length} outputs`);
    this.finishWith({ reason: 'live', primary });
  }

  private noteReleased(released: number): void {
    if (released <= this.releasedHint) return;
    this.releasedHint = released;
    let drop = 0;
    while (drop < this.replayed.length && this.replayed[drop]!.index < released) drop++;
    if (drop > 0) this.replayed.splice(0, drop);
  }

  private diverge(err: unknown): void {
    if (!(err instanceof DivergenceError)) {
      this.failure ??= err;
      this.finishWith({ reason: 'stopped', detail: String(err) });
      return;
    }
    this.divergence = err;
    this.actor.send({ type: 'digest.mismatch' });
    this.finishWith({ reason: 'diverged', detail: err.message });
  }

  private finishWith(o: BackupOutcome): void {
    this.outcome ??= o;
    this.stopped = true;
    // Gone live, the CPU stays paused for the new primary to take over; otherwise it ends here.
    if (this.outcome.reason !== 'live') this.cpu.stop();
    this.env.interrupt();
    this.finished();
  }

  private note(type: NodeEvent['type'], detail: string): void {
    this.events.next({ node: this.name, type, detail });
  }

  private teardown(): void {
    this.entriesSub?.unsubscribe();
    for (const s of this.subs) s.unsubscribe();
    this.actor.stop();
    this.events.complete();
  }
}
