import { Subject, type Observable, type Subscription } from 'rxjs';
import { Machine } from './machine.js';
import { LiveEnv } from './env/live.js';
import { createInProcessChannel, type InProcessChannel, type InProcessChannelOptions } from './channel/in-process.js';
import type { Arbiter } from './arbiter/arbiter.js';
import { InProcessArbiter } from './arbiter/in-process.js';
import type { ReleasedOutput } from './ft/output-gate.js';
import { PrimaryNode, type NodeEvent, type PrimaryStats } from './ft/primary-node.js';
import { BackupNode, type BackupOutcome, type BackupStats } from './ft/backup-node.js';
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
  /** Outputs as released to the outside world, numbered so a receiver can drop duplicates. */
  readonly outputs$: Observable<ReleasedOutput>;
  readonly events$: Observable<PairEvent>;
  stats(): PairStats;
  stop(): Promise<void>;
}

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
  const bm = boot();
  const channel: InProcessChannel = createInProcessChannel(opts.channel);
  const common = {
    pairId,
    generation: 1,
    arbiter,
    ...(opts.timing ? { timing: opts.timing } : {}),
    ...(opts.batch === undefined ? {} : { batch: opts.batch }),
    ...(opts.inspect ? { inspect: opts.inspect } : {}),
  };
  let primary: PrimaryNode | undefined = new PrimaryNode({ ...common, name: 'primary', machine: pm, channel: channel.primary });
  let backup: BackupNode | undefined = new BackupNode({ ...common, name: 'backup', machine: bm, channel: channel.backup });
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

  return {
    outputs$: outputs.asObservable(),
    events$: events.asObservable(),

    async start(): Promise<PairOutcome> {
      const first = primary!;
      const second = backup!;
      const primaryDone = runPrimary(first);
      const backupDone = runBackup(second).then(async (b) => {
        backup = undefined;
        if (b.reason !== 'live' || stopping) return undefined;
        failovers++;
        events.next({ node: 'pair', type: 'failover', detail: `backup is live at icount ${b.primary.machine.icount}`, atMs: performance.now() - t0 });
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
      if (who === 'primary') primary?.crash();
      else backup?.crash();
      channel.cut();
    },

    cutChannel() {
      channel.cut();
    },

    stats(): PairStats {
      const s = channel.stats();
      return {
        generation: primary?.generation ?? 1,
        live: primary?.name,
        primary: primary?.stats(),
        backup: backup?.stats(),
        logBytes: s.bytesSent,
        logEntries: s.entriesSent,
      };
    },

    async stop() {
      stopping = true;
      primary?.crash();
      backup?.crash();
      channel.cut();
    },
  };
}
