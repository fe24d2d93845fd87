import { Subject, type Observable, type Subscription } from 'rxjs';
import { Machine } from './machine.js';
import { LiveEnv } from './env/live.js';
import { createInProcessChannel, type InProcessChannel, type InProcessChannelOptions } from './channel/in-process.js';
import type { Arbiter } from './arbiter/arbiter.js';
import { InProcessArbiter } from './arbiter/in-process.js';
import type { ReleasedOutput } from './ft/output-gate.js';
import { PrimaryNode, type NodeEvent, type PrimaryStats } from './ft/primary-node.js';
import { BackupNode, type BackupOutcome, type BackupStats } from './ft/backup-node.js';
import { RemoteBackup } from './ft/remote-backup.js';
import type { FtTiming } from './ft/timing.js';
import type { RunOutcome } from './runner.js';
import type { ActorOptions, AnyActorLogic } from 'xstate';
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
}

export type PairEvent =
  | NodeEvent
  | { node: 'pair'; type: 'failover'; detail: string; atMs: number }
  | { node: 'pair'; type: 'killed'; detail: string; atMs: number };

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
  /** Fail-stop one replica (and with it its end of the logging channel). */
  kill(who: 'primary' | 'backup'): void;
  /** Cut the logging channel while both replicas live: exactly one goes on. */
  cutChannel(): void;
  /**
   * Resolves once both replicas are up (with `backupIn: 'worker'`, once the worker has booted
   * its machine). start() waits for it anyway; a benchmark awaits it to time the run alone.
   */
  ready(): Promise<void>;
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
 * A fault-tolerant pair in one process (DESIGN §4): primary and backup machines booted from
 * one image, joined by the embedded logging channel and an arbiter. When the primary dies the
 * backup takes over and `outputs$` goes on from the new primary.
 */
export function createPair(opts: PairOptions): Pair {
  const memoryMiB = opts.memoryMiB ?? DEFAULT_MEMORY_MIB;
  const arbiter = opts.arbiter ?? new InProcessArbiter();
  const pairId = opts.pairId ?? `pair-${process.pid}-${Date.now().toString(36)}`;
  const outputs = new Subject<ReleasedOutput>();
  const events = new Subject<PairEvent>();
  const subs: Subscription[] = [];
  const boot = (): Machine => {
    const m = new Machine({ memoryMiB, env: new LiveEnv() });
    m.loadElf(opts.image);
    return m;
  };
  const pm = boot();
  const inWorker = opts.backupIn === 'worker';
  const timing = inWorker ? { ...WORKER_TIMING, ...opts.timing } : opts.timing;
  const common = {
    pairId,
    generation: 1,
    arbiter,
    ...(timing ? { timing } : {}),
    ...(opts.batch === undefined ? {} : { batch: opts.batch }),
  };
  // The backup and the channel to it: in this thread, or in a worker over a MessagePort.
  const remote = inWorker
    ? new RemoteBackup({ ...common, name: 'backup', image: opts.image, memoryMiB, ...(opts.channel ? { channel: opts.channel } : {}) })
    : undefined;
  const local: InProcessChannel | undefined = inWorker ? undefined : createInProcessChannel(opts.channel);
  const channel = remote?.channel ?? local!;
  const withInspect = { ...common, ...(opts.inspect ? { inspect: opts.inspect } : {}) };
  let primary: PrimaryNode | undefined = new PrimaryNode({
    ...withInspect,
    name: 'primary',
    machine: pm,
    channel: remote ? remote.channel.primary : local!.primary,
  });
  let backup: BackupNode | undefined = local
    ? new BackupNode({ ...withInspect, name: 'backup', machine: boot(), channel: local.backup })
    : undefined;
  let failovers = 0;
  let stopping = false;
  const t0 = performance.now();

  const attach = (node: PrimaryNode | BackupNode): void => {
    subs.push(node.events$.subscribe((e) => events.next(e)));
    if (node instanceof PrimaryNode) subs.push(node.released$.subscribe((o) => outputs.next(o)));
  };

  const runPrimary = async (node: PrimaryNode): Promise<RunOutcome | undefined> => {
    attach(node);
    primary = node;
    const outcome = await node.run();
    return outcome.reason === 'halt' || outcome.reason === 'fault' ? outcome : undefined;
  };

  const runBackup = async (node: BackupNode): Promise<BackupOutcome> => {
    attach(node);
    return node.run();
  };

  const failedOver = (icount: number): void => {
    failovers++;
    events.next({ node: 'pair', type: 'failover', detail: `backup is live at icount ${icount}`, atMs: performance.now() - t0 });
  };

  /** The backup in a worker: its events and, once it is live there, its outputs come through the proxy. */
  const runRemote = async (r: RemoteBackup): Promise<RunOutcome | undefined> => {
    subs.push(r.events$.subscribe((e) => events.next(e)));
    subs.push(r.released$.subscribe((o) => outputs.next(o)));
    subs.push(r.live$.subscribe((icount) => failedOver(icount)));
    const b = await r.run();
    if (b.reason !== 'live') return undefined;
    const run = b.run;
    return run && (run.reason === 'halt' || run.reason === 'fault') ? run : undefined;
  };

  return {
    outputs$: outputs.asObservable(),
    events$: events.asObservable(),

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
      const primaryDone = runPrimary(first);
      const backupDone = remote
        ? runRemote(remote)
        : runBackup(backup!).then(async (b) => {
          backup = undefined;
          if (b.reason !== 'live' || stopping) return undefined;
          failedOver(b.primary.machine.icount);
          return runPrimary(b.primary);
        });
      const [p, b] = await Promise.all([primaryDone, backupDone]);
      const run = b ?? p;
      outputs.complete();
      events.complete();
      for (const s of subs) s.unsubscribe();
      return { code: run?.reason === 'halt' ? run.code : undefined, run, failovers };
    },

    kill(who) {
      events.next({ node: 'pair', type: 'killed', detail: who, atMs: performance.now() - t0 });
      // After a failover in the worker, the live primary is the worker's.
      if (who === 'primary') {
        if (remote?.isLive) remote.crash();
        else primary?.crash();
      } else if (remote) {
        if (!remote.isLive) remote.crash();
      } else backup?.crash();
      channel.cut();
    },

    cutChannel() {
      channel.cut();
    },

    stats(): PairStats {
      const s = channel.stats();
      const log = { logBytes: s.bytesSent, logEntries: s.entriesSent };
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
      primary?.crash();
      backup?.crash();
      remote?.crash();
      channel.cut();
    },
  };
}
