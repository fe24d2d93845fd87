import { Subject, Subscription, type Observable } from 'rxjs';
import { Machine } from './machine.js';
import { LiveEnv } from './env/live.js';
import { createInProcessChannel, type InProcessChannel, type InProcessChannelOptions } from './channel/in-process.js';
import type { Arbiter } from './arbiter/arbiter.js';
import { InProcessArbiter } from './arbiter/in-process.js';
import { newPairInstance } from './ft/identity.js';
import type { ReleasedOutput } from './ft/output-gate.js';
import { PrimaryNode, type NodeEvent, type PrimaryStats } from './ft/primary-node.js';
import { BackupNode, type BackupOutcome, type BackupStats } from './ft/backup-node.js';
import { RemoteBackup } from './ft/remote-backup.js';
import { withTiming, type FtTiming } from './ft/timing.js';
import type { RunOutcome } from './runner.js';
import { createActor, type Actor, type ActorOptions, type AnyActorLogic } from 'xstate';
import { pairMachine } from '../machines/pair.machine.js';
import type { DiskBackend, NetBackend } from './io/backend.js';
import { UdpNet } from './io/net-udp.js';
import type { WorkerIo } from './ft/remote-backup.js';
import { DEFAULT_MEMORY_MIB } from './platform.js';

export interface PairOptions {
  /** The guest: an ELF32 RISC-V executable. */
  image: Uint8Array;
  memoryMiB?: number;
  /** The split-brain guard; an in-process one by default. */
  arbiter?: Arbiter;
  /** Options of the embedded logging channel (flow-control marks, latency). */
  channel?: InProcessChannelOptions;
  /** The arbiter key's first part; unique per pair. */
  pairId?: string;
  timing?: Partial<FtTiming>;
  /** Largest batch of instructions between host events. */
  batch?: number;
  /** Inspection of every chart the pair runs (`--inspect`, the dashboard); actor ids are node names. */
  inspect?: ActorOptions<AnyActorLogic>['inspect'];
  /**
   * Where the backup replica runs. 'worker': in a worker thread, on the other core, with the
   * log over a MessagePort, as VMware FT runs it on another host; the primary keeps a whole
   * core, which is what makes FT cheap. 'thread' (the default): in this thread beside the
   * primary, which halves the primary's speed but is fully deterministic to schedule and needs
   * no thread start-up (~50 ms from dist, ~1 s from sources): the unit tests use it.
   * With 'worker', `inspect` sees only the charts of this thread.
   */
  backupIn?: 'thread' | 'worker';
  /**
   * The shared disk and the network (opened by the caller, e.g. with `openIo`). The primary
   * uses them; a backup gets them only when it goes live. Backends cannot cross threads: a
   * backup in a worker opens its own from their specs (the disk's name, the forwards' bound
   * ports) at go-live, once the primary here has let go of them (this pair closes them then).
   * A network other than UDP forwarding keeps the backup in this thread.
   */
  disk?: DiskBackend;
  net?: NetBackend;
}

export type PairEvent =
  | NodeEvent
  | { node: 'pair'; type: 'failover'; detail: string; atMs: number }
  | { node: 'pair'; type: 'killed'; detail: string; atMs: number }
  | { node: 'pair'; type: 'reprotect'; detail: string; atMs: number }
  /** The pair chart did not take a requested fault or re-protection in its current state. */
  | { node: 'pair'; type: 'refused'; detail: string; atMs: number }
  | { node: 'pair'; type: 'error'; detail: string; atMs: number };

export interface PairStats {
  generation: number;
  live: string | undefined;
  primary: PrimaryStats | undefined;
  backup: BackupStats | undefined;
  logBytes: number;
  logEntries: number;
}

export interface PairOutcome {
  /** The guest's exit code, or undefined if the pair was stopped first. */
  code: number | undefined;
  run: RunOutcome | undefined;
  failovers: number;
}

export interface Pair {
  /** Boot both replicas and run until the guest exits or the pair is stopped. */
  start(): Promise<PairOutcome>;
  /**
   * Fail-stop one replica (and with it its end of the logging channel). The pair chart
   * decides whether that replica is there to kill; a refusal comes as a `refused` event.
   */
  kill(who: 'primary' | 'backup'): void;
  /** Cut the logging channel while both replicas live: exactly one goes on (else `refused`). */
  cutChannel(): void;
  /**
   * Resolves once both replicas are up (with `backupIn: 'worker'`, once the worker has booted
   * its machine). start() waits for it anyway; a benchmark awaits it to time the run alone.
   */
  ready(): Promise<void>;
  /**
   * Re-protection (DESIGN §3): a new backup joins the live primary from a snapshot while it
   * keeps running; the pair is protected again once the backup has the snapshot. Only while
   * the pair is unprotected and its live primary runs in this thread.
   */
  addBackup(): void;
  /**
   * Fault injection for divergence detection: flip one byte of the backup's RAM. The next
   * digest comparison reports it, the backup is dropped, and a new one is rebuilt from a
   * snapshot of the primary (DESIGN §3 Divergence).
   */
  corruptBackup(): void;
  /** The pair chart: starting, protected, failingOver, unprotected, reprotecting, ... */
  readonly actor: Actor<typeof pairMachine>;
  /** Outputs as released to the outside world, numbered so a receiver can drop duplicates. */
  readonly outputs$: Observable<ReleasedOutput>;
  readonly events$: Observable<PairEvent>;
  stats(): PairStats;
  stop(): Promise<void>;
}

/**
 * Failure detection for a backup in a worker thread. Two threads are scheduled by the OS, and
 * on a busy 2-core host one can wait 100 ms and more for a core; the default 60 + 30 ms then
 * made the primary declare a live backup dead (it wins the arbiter, so this is safe, but the
 * pair loses its protection). 200 + 100 ms keeps failover well under a second.
 */
const WORKER_TIMING: Partial<FtTiming> = { suspectMs: 200, confirmMs: 100 };
/**
 * How long a primary whose backup is in a worker chains batches without an event-loop turn
 * (ms): its log port is polled between batches (pollBetweenBatches), so an ack needs no turn;
 * timers (heartbeats, the channel's hold) and the worker's control messages wait at most this.
 */
const WORKER_PRIMARY_CHAIN_MS = 1;

/**
 * A fault-tolerant pair in one process (DESIGN §4): primary and backup machines booted from
 * one image, joined by the embedded logging channel and an arbiter. When the primary dies the
 * backup takes over and `outputs$` goes on from the new primary; `addBackup()` protects it
 * again. The pair chart (machines/pair.machine.ts) follows the whole story and would catch a
 * second live primary.
 */
export function createPair(opts: PairOptions): Pair {
  const memoryMiB = opts.memoryMiB ?? DEFAULT_MEMORY_MIB;
  const arbiter = opts.arbiter ?? new InProcessArbiter();
  const pairId = opts.pairId ?? newPairInstance();
  const outputs = new Subject<ReleasedOutput>();
  const events = new Subject<PairEvent>();
  const subs: Subscription[] = [];
  const io = opts.disk || opts.net ? { ...(opts.disk ? { disk: opts.disk } : {}), ...(opts.net ? { net: opts.net } : {}) } : undefined;
  /** A machine with the pair's devices; only the first primary's gets the backends. */
  const machine = (withBackends: boolean): Machine => new Machine({
    memoryMiB,
    env: new LiveEnv(),
    ...(opts.disk ? { disk: withBackends ? { backend: opts.disk } : { sectors: opts.disk.sectors } } : {}),
    ...(opts.net ? { net: withBackends ? { backend: opts.net } : {} } : {}),
  });
  const boot = (withBackends: boolean): Machine => {
    const m = machine(withBackends);
    m.loadElf(opts.image);
    return m;
  };
  const pm = boot(true);
  const workerIo = opts.backupIn === 'worker' ? ioForWorker(opts) : undefined;
  const inWorker = workerIo !== undefined;
  const timing = inWorker ? { ...WORKER_TIMING, ...opts.timing } : opts.timing;
  const common = {
    pairId,
    generation: 1,
    arbiter,
    ...(timing ? { timing } : {}),
    ...(opts.batch === undefined ? {} : { batch: opts.batch }),
  };
  const inspect = opts.inspect ? { inspect: opts.inspect } : {};
  // The backup and the channel to it: in this thread, or in a worker over a MessagePort.
  const remote = inWorker
    ? new RemoteBackup({
      ...common, name: 'backup', image: opts.image, memoryMiB, ...(opts.channel ? { channel: opts.channel } : {}),
      ...(workerIo && (workerIo.disk || workerIo.net) ? { io: workerIo } : {}),
    })
    : undefined;
  // Each end of a channel runs the channel chart, inspected under its node's name; the
  // primary's end reports a silent backup after the suspicion timeout.
  const charts = (p: string, b: string): InProcessChannelOptions['charts'] => ({
    primary: { id: `${p}.channel`, silenceMs: withTiming(timing).suspectMs, ...(inspect as { inspect?: never }) },
    backup: { id: `${b}.channel`, ...(inspect as { inspect?: never }) },
  });
  const local: InProcessChannel | undefined = inWorker ? undefined : createInProcessChannel({ ...opts.channel, charts: charts('primary', 'backup') });
  let channel: { cut(): void; stats(): { bytesSent: number; entriesSent: number } } = remote?.channel ?? local!;
  /** Log traffic of channels to backups that are gone. */
  const logBefore = { bytes: 0, entries: 0 };
  const withInspect = { ...common, ...inspect };
  let primary: PrimaryNode | undefined = new PrimaryNode({
    ...withInspect,
    name: 'primary',
    machine: pm,
    channel: remote ? remote.channel.primary : local!.primary,
    // A backup in this thread replays only between the primary's batches: a turn each. A
    // worker's acks are polled between batches (port.ts): batches chain, a turn a millisecond.
    chainMs: local ? 0 : WORKER_PRIMARY_CHAIN_MS,
  });
  let backup: BackupNode | undefined = local
    ? new BackupNode({ ...withInspect, name: 'backup', machine: boot(false), channel: local.backup, replaySliceMs: 0, ...(io ? { io } : {}) })
    : undefined;
  let failovers = 0;
  let joins = 0;
  let stopping = false;
  let lastRun: RunOutcome | undefined;
  const running = new Set<Promise<void>>();
  const t0 = performance.now();
  const at = (): number => performance.now() - t0;

  const pairActor = createActor(
    pairMachine.provide({
      actions: {
        // The failover itself is reported where it happens (failedOver); the chart only orders it.
        announceFailover: () => {},
        startBackup: () => joinBackup(),
        reportSplitBrain: () => events.next({ node: 'pair', type: 'error', detail: 'two live primaries: the split-brain guard failed', atMs: at() }),
        // The injected faults. What they lead to reaches the chart from the nodes (observe*).
        crashPrimary: () => {
          events.next({ node: 'pair', type: 'killed', detail: 'primary', atMs: at() });
          // After a failover in the worker, the live primary is the worker's (terminating the
          // thread closes its sockets and files, as a process's exit would).
          if (remote?.isLive) remote.crash();
          else {
            primary?.crash();
            // A killed process's ports and disk lock go with it, not at the failover: clients
            // see a closed port at once (ECONNREFUSED) rather than a socket that swallows
            // their queries. Only where the other replica opens its own backends (a worker);
            // a backup in this thread takes over these very objects at go-live.
            if (remote) void primary?.machine.io?.abandon();
          }
          channel.cut();
        },
        crashBackup: () => {
          events.next({ node: 'pair', type: 'killed', detail: 'backup', atMs: at() });
          if (remote) {
            if (!remote.isLive) remote.crash();
          } else backup?.crash();
          channel.cut();
        },
        cutChannel: () => channel.cut(),
        corruptBackup: () => {
          const m = backup?.machine;
          if (!m) throw new Error('corruptBackup: no backup in this thread');
          // A byte in the middle of RAM: the guest may never read it, only the digest notices.
          const addr = m.bus.ramBase + (m.bus.ramBytes >>> 1);
          const [b] = m.bus.readRam(addr, 1);
          m.bus.writeRam(addr, Uint8Array.of((b ?? 0) ^ 0x5a));
        },
        refuseRequest: ({ event }) => {
          const why = `${event.type}: not now, the pair is ${JSON.stringify(pairActor.getSnapshot().value)}`;
          events.next({ node: 'pair', type: 'refused', detail: why, atMs: at() });
        },
      },
    }),
    { input: { generation: 1 }, id: 'pair', ...inspect },
  );
  pairActor.start();

  /** Run a task to its end; the pair is over when no task is left. */
  const track = (task: Promise<RunOutcome | undefined>): void => {
    const p = task.then((r) => {
      if (r) lastRun = r;
    });
    running.add(p);
    void p.finally(() => running.delete(p));
  };

  /**
   * Report a primary node's chart to the pair chart: entering `alone` (it won the arbiter
   * without its backup) and entering `protected` (a joining backup caught up). A backup gone
   * live enters `alone` once by its own road: that is `pair.backupLive`, already reported.
   */
  const follow = (node: PrimaryNode, promoted: boolean): void => {
    let skipAlone = promoted;
    let was: unknown;
    const watch = node.actor.subscribe((snap) => {
      const now = snap.value;
      if (now === 'alone' && was !== 'alone') {
        if (skipAlone) skipAlone = false;
        else pairActor.send({ type: 'pair.primaryAlone' });
      }
      if (typeof now === 'object' && now !== null && 'protected' in now && !(typeof was === 'object' && was !== null && 'protected' in was)) {
        pairActor.send({ type: 'pair.backupCaughtUp' });
      }
      was = now;
    });
    subs.push(new Subscription(() => watch.unsubscribe()));
  };

  const runPrimary = async (node: PrimaryNode, promoted: boolean): Promise<RunOutcome | undefined> => {
    subs.push(node.events$.subscribe((e) => {
      events.next(e);
      // Observed, not inferred from who asked: the live primary's host died.
      if (e.type === 'crashed' && !stopping) pairActor.send({ type: 'pair.primaryDied' });
    }));
    subs.push(node.released$.subscribe((o) => outputs.next(o)));
    primary = node;
    follow(node, promoted);
    const outcome = await node.run();
    return outcome.reason === 'halt' || outcome.reason === 'fault' ? outcome : undefined;
  };

  const failedOver = (icount: number): void => {
    failovers++;
    events.next({ node: 'pair', type: 'failover', detail: `backup is live at icount ${icount}`, atMs: at() });
    pairActor.send({ type: 'pair.backupLive' });
  };

  /** A backup in this thread: replay; if it goes live, run it as the new primary. */
  const runBackup = async (node: BackupNode): Promise<RunOutcome | undefined> => {
    let crashed = false;
    subs.push(node.events$.subscribe((e) => {
      events.next(e);
      if (e.type === 'crashed' && !stopping) {
        crashed = true;
        pairActor.send({ type: 'pair.backupDied' });
      }
    }));
    const b: BackupOutcome = await node.run();
    if (backup === node) backup = undefined;
    // A backup that halted, diverged or gave up joining no longer protects anyone.
    if (b.reason === 'diverged') {
      events.next({ node: 'pair', type: 'error', detail: `${node.name} diverged (${b.detail}); rebuilding the backup from a snapshot`, atMs: at() });
      pairActor.send({ type: 'pair.backupDiverged' });
    } else if (!crashed && (b.reason === 'halted' || (b.reason === 'stopped' && !stopping))) pairActor.send({ type: 'pair.backupDied' });
    if (b.reason !== 'live' || stopping) return undefined;
    failedOver(b.primary.machine.icount);
    return runPrimary(b.primary, true);
  };

  /** The backup in a worker: its events and, once it is live there, its outputs come through the proxy. */
  const runRemote = async (r: RemoteBackup): Promise<RunOutcome | undefined> => {
    subs.push(r.events$.subscribe((e) => {
      events.next(e);
      // The worker's backup, or the primary it became, died with its thread.
      if (e.type === 'crashed' && !stopping) pairActor.send({ type: r.isLive ? 'pair.primaryDied' : 'pair.backupDied' });
    }));
    subs.push(r.released$.subscribe((o) => outputs.next(o)));
    subs.push(r.live$.subscribe((icount) => {
      failedOver(icount);
      if (io) void releaseIo(r);
    }));
    const b = await r.run();
    if (b.reason !== 'live') return undefined;
    const run = b.run;
    return run && (run.reason === 'halt' || run.reason === 'fault') ? run : undefined;
  };

  /**
   * The worker's replica is live, so the primary here is not (killed, or halted having lost
   * the arbiter): its released writes reach the disk, the disk and ports close, and only then
   * may the worker open them (DESIGN §3 one writer per disk).
   */
  const releaseIo = async (r: RemoteBackup): Promise<void> => {
    await pm.io?.drain();
    await Promise.all([opts.disk?.close(), opts.net?.close()]);
    r.releaseIo();
  };

  /** Re-protection: a blank machine joins the live primary from its snapshot (chart: startBackup). */
  const joinBackup = (): void => {
    const live = primary;
    if (!live) throw new Error('addBackup: no live primary');
    const s = channel.stats();
    logBefore.bytes += s.bytesSent;
    logBefore.entries += s.entriesSent;
    const name = `backup-${++joins}`;
    const ch = createInProcessChannel({ ...opts.channel, charts: charts(live.name, name) });
    channel = ch;
    const node = new BackupNode({
      ...withInspect,
      name,
      generation: live.generation,
      machine: machine(false),
      channel: ch.backup,
      joining: true,
      replaySliceMs: 0,
      ...(io ? { io } : {}),
    });
    backup = node;
    track(runBackup(node));
    live.attachBackup(ch.primary);
    events.next({ node: 'pair', type: 'reprotect', detail: `${node.name} joins ${live.name} at icount ${live.machine.icount}`, atMs: at() });
  };

  return {
    outputs$: outputs.asObservable(),
    events$: events.asObservable(),
    actor: pairActor,

    async ready(): Promise<void> {
      await remote?.ready();
    },

    async start(): Promise<PairOutcome> {
      const first = primary!;
      if (remote) {
        // The primary's watchdog starts with its run: a backup still booting would look dead.
        try {
          await remote.ready();
        } catch (err) {
          outputs.complete();
          events.complete();
          channel.cut();
          throw err;
        }
      }
      pairActor.send({ type: 'pair.started' });
      track(runPrimary(first, false));
      track(remote ? runRemote(remote) : runBackup(backup!));
      while (running.size > 0) await Promise.race(running);
      if (lastRun) pairActor.send({ type: 'pair.guestExited' });
      pairActor.stop();
      outputs.complete();
      events.complete();
      for (const sub of subs) sub.unsubscribe();
      return { code: lastRun?.reason === 'halt' ? lastRun.code : undefined, run: lastRun, failovers };
    },

    kill(who) {
      pairActor.send({ type: who === 'primary' ? 'fault.killPrimary' : 'fault.killBackup' });
    },

    cutChannel() {
      pairActor.send({ type: 'fault.cutChannel' });
    },

    addBackup() {
      if (remote?.isLive) throw new Error('addBackup: the live primary runs in the worker thread; re-protection there is not supported');
      const before = pairActor.getSnapshot();
      pairActor.send({ type: 'pair.addBackup' });
      // The chart decides: only an unprotected pair takes a new backup.
      if (!pairActor.getSnapshot().matches('reprotecting')) {
        throw new Error(`addBackup: the pair is ${JSON.stringify(before.value)}, not unprotected`);
      }
    },

    corruptBackup() {
      if (!backup) throw new Error('corruptBackup: no backup in this thread');
      pairActor.send({ type: 'fault.corruptBackup' });
    },

    stats(): PairStats {
      const s = channel.stats();
      const log = { logBytes: logBefore.bytes + s.bytesSent, logEntries: logBefore.entries + s.entriesSent };
      if (remote?.isLive) {
        return { generation: remote.generation, live: remote.name, primary: remote.primaryStats(), backup: undefined, ...log };
      }
      return {
        generation: primary?.generation ?? 1,
        live: primary?.name,
        primary: primary?.stats(),
        backup: remote ? remote.stats() : backup?.stats(),
        ...log,
      };
    },

    async stop() {
      stopping = true;
      pairActor.send({ type: 'pair.stop' });
      primary?.crash();
      backup?.crash();
      remote?.crash();
      channel.cut();
    },
  };
}

/**
 * What a backup in a worker needs to open the pair's backends itself: the disk's spec (its
 * name is one: `file:PATH`, `nbd://HOST:PORT/EXPORT`) and size, and the forwards with the ports
 * really bound. Undefined when the network cannot be reopened there (not UDP forwarding).
 */
function ioForWorker(opts: PairOptions): WorkerIo | undefined {
  if (opts.net && !(opts.net instanceof UdpNet)) return undefined;
  const net = opts.net;
  return {
    ...(opts.disk ? { disk: { spec: opts.disk.name, sectors: opts.disk.sectors } } : {}),
    ...(net ? { net: net.forwards.map((f, i) => ({ ...f, hostPort: net.boundPorts[i]! })) } : {}),
  };
}
