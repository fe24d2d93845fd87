import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import { cpuMachine, type BatchExit, type CpuEvent, type CpuMode } from '../machines/cpu.machine.js';
import type { Machine } from './machine.js';
import type { Env } from './env/env.js';
import { Exit } from './types.js';
import type { RunOutcome } from './runner.js';

/** The CPU chart running one machine: every execution of ftvm runs under one of these. */
export type CpuActor = Actor<typeof cpuMachine>;

/** The effects' callbacks; a node that adopts a running CPU (a backup gone live) rebinds them. */
export interface CpuHooks {
  /** Called once per batch with its exit, after the chart took its step. */
  onBatch?: ((exit: BatchExit) => void) | undefined;
  onHalt?: ((code: number) => void) | undefined;
  /**
   * The machine cannot go on: a guest fault (`error` undefined, the hart says why) or an env
   * that failed (`error`: a replay's DivergenceError, a deterministic guest that never wakes).
   */
  onFault?: ((message: string, error?: unknown) => void) | undefined;
  /** The env `cpu.takeover` installs for the mode it names (go-live, DESIGN §3). */
  takeoverEnv?: ((mode: 'live' | 'record') => Env) | undefined;
}

export interface CpuActorOptions extends CpuHooks {
  /**
   * Largest batch of instructions (one `cpu.batchEnded` each); read before every batch. A
   * function is asked before every batch: a node that must see its socket soon (an FT node
   * waiting for an ack) sizes batches to a slice of wall time.
   */
  batch?: number | (() => number);
  /**
   * Batches follow each other without an event-loop turn for this long (microtasks), then
   * the next one waits for a turn so sockets, timers and stdin are served. 0 (default): every
   * batch on its own turn, as the primary wants (an ack that is due arrives before its next batch).
   */
  yieldMs?: number;
  /**
   * `batch` is a slice of time, not a count (Machine.step's `softMax`): a slice may end a
   * little short of it, at a translated block's boundary. Not for a node whose batch size is
   * a count someone relies on; `cpu.runUntil`'s target and the env's inputs stay exact.
   */
  softBatch?: boolean;
  /**
   * More slices in one batch. After a slice that ended on its budget, at one of the env's
   * inputs, or at the guest's request (`exit`), this thread's pollers run (see
   * `pollBetweenBatches`) and, if the chart still runs and this answers true, the batch goes on
   * with another slice: no `cpu.batchEnded`, no microtask hop, no `onBatch` in between. A
   * backup in a worker slices its replay to read its log port every 40 µs, and a chart event
   * and two microtask hops per slice cost more than the poll; it answers false once the poll
   * brought something (its delivery and ack are microtasks, which wait for the batch's end) or
   * the batch has run long enough for the event loop's turn. Without it, one slice a batch.
   */
  moreSlices?: (exit: 'budget' | 'request') => boolean;
  /** Runs a scheduled batch later (default: see yieldMs). Tests pass their own to step batches by hand. */
  schedule?: (runBatch: () => void) => void;
  inspect?: Observer<InspectionEvent> | ((e: InspectionEvent) => void);
  /** Actor id, for inspection. */
  id?: string;
}

const DEFAULT_BATCH = 1_000_000;

// One event object per exit: a batch allocates nothing to report itself.
const ENDED: Record<BatchExit, CpuEvent> = {
  budget: { type: 'cpu.batchEnded', exit: 'budget' },
  request: { type: 'cpu.batchEnded', exit: 'request' },
  wfi: { type: 'cpu.batchEnded', exit: 'wfi' },
  halt: { type: 'cpu.batchEnded', exit: 'halt' },
  fault: { type: 'cpu.batchEnded', exit: 'fault' },
  target: { type: 'cpu.batchEnded', exit: 'target' },
  horizon: { type: 'cpu.batchEnded', exit: 'horizon' },
};
/** BatchExit by Exit (the Exit enum's order). */
const NAME_OF: readonly BatchExit[] = ['budget', 'wfi', 'halt', 'fault', 'request'];
const INPUT: CpuEvent = { type: 'cpu.inputDelivered' };
const ENV_FAILED: CpuEvent = { type: 'cpu.envFailed' };

/**
 * Host I/O this thread polls between batches, synchronously (see `pollBetweenBatches`). A
 * Set read once per batch: empty (no worker channel in this thread), it costs one size check.
 */
const pollers = new Set<() => void>();

/**
 * Poll `fn` after every batch of every CPU actor in this thread, right after the batch's
 * `cpu.batchEnded` and before the chart's decision about the next batch is read; returns the
 * unregister function. For a transport whose messages can be received without an event-loop
 * turn (a MessagePort, `receiveMessageOnPort`): a backup in a worker then learns of log
 * entries, and acks them, between chained batches, and a primary sees its acks there, instead
 * of both waiting for a turn per batch. What `fn` sets off (an entry's delivery, an ack's
 * flush) is queued ahead of the next batch, which comes two microtask hops later. `fn` may
 * send events to CPU actors (a pause, a stop): the decision read after it honours them.
 */
export function pollBetweenBatches(fn: () => void): () => void {
  pollers.add(fn);
  return () => {
    pollers.delete(fn);
  };
}

function pollAll(): void {
  for (const fn of pollers) fn();
}

/** The options object each CPU actor reads its callbacks from (rebound on adoption). */
const bindings = new WeakMap<CpuActor, CpuActorOptions>();

/**
 * The CPU control chart driving a real machine (DESIGN §4): the chart decides whether
 * another batch runs; each batch is plain `machine.step()` and answers with exactly one
 * `cpu.batchEnded`, and the next batch is queued only if the chart is still in `running`
 * or `runningUntil` after that event (read from its snapshot, never kept here). A batch is started later, never inside the chart's own step, at most one
 * is queued at a time, and once started it runs to its end and reports truthfully, even if a
 * pause came meanwhile. `m.env` is the env holder: `cpu.takeover` swaps it in place.
 */
export function createCpuActor(m: Machine, opts: CpuActorOptions = {}): CpuActor {
  let lastYield = performance.now();
  let target = Infinity;
  let stopped = false;
  let queued = false;
  /** Why the env failed, for reportFault (undefined: a guest fault). */
  let envError: unknown;
  /** Each awaitInput gets a number: an idle() that resolves after the CPU moved on is stale. */
  let waitId = 0;

  const runBatch = (): void => {
    queued = false;
    // After cpu.stop the machine is to be reloaded: a batch still queued must not touch it.
    if (stopped) return;
    // The chart is flat: its value is the state's name (cheaper than matches(), once per batch).
    const state = actor.getSnapshot().value;
    const until = state === 'runningUntil';
    // A batch queued before a pause does not start while paused; resume queues one anew.
    if (!until && state !== 'running') return;
    const before = m.icount;
    const room = until ? target - before : Infinity;
    let name: BatchExit;
    if (room <= 0) {
      // At the target already: inputs due at it are not delivered (the state at exactly that icount).
      name = 'target';
    } else {
      let exit: Exit;
      /** Where the last slice started: one that ran nothing stands at the env's horizon. */
      let sliceFrom = before;
      try {
        const more = opts.moreSlices;
        for (;;) {
          const batch = opts.batch;
          const size = batch === undefined ? DEFAULT_BATCH : typeof batch === 'number' ? batch : batch();
          const left = until ? target - m.icount : Infinity;
          sliceFrom = m.icount;
          exit = m.step(Math.min(size, left), opts.softBatch === true && size < left);
          if (more === undefined || (exit !== Exit.Budget && exit !== Exit.Request)) break;
          if (m.icount === sliceFrom || (until && m.icount >= target)) break;
          if (pollers.size > 0) pollAll();
          const state = actor.getSnapshot().value;
          if (state !== (until ? 'runningUntil' : 'running')) break;
          if (!more(exit === Exit.Budget ? 'budget' : 'request')) break;
        }
      } catch (err) {
        envError = err;
        actor.send(ENDED.fault);
        opts.onBatch?.('fault');
        return;
      }
      name = NAME_OF[exit]!;
      if (exit !== Exit.Halt && exit !== Exit.Fault) {
        if (until && m.icount >= target) name = 'target';
        // The env's horizon is now (replay waiting for its log): wait, do not spin.
        else if (exit === Exit.Budget && m.icount === sliceFrom) name = 'horizon';
      }
    }
    actor.send(ENDED[name]);
    if (pollers.size > 0) pollAll();
    // The chart's decision: an exit that left it running (budget, request) means the next
    // batch runs; any other took it elsewhere, and that state's entry says what happens.
    const next = actor.getSnapshot();
    if (next.status === 'active' && (next.value === 'running' || next.value === 'runningUntil')) queueBatch();
    opts.onBatch?.(name);
  };
  const queueBatch = (): void => {
    if (queued) return;
    queued = true;
    schedule(runBatch);
  };
  const afterTurn = (): void => {
    lastYield = performance.now();
    runBatch();
  };
  const schedule = opts.schedule ?? ((run: () => void): void => {
    // Read each time: a node that adopts this CPU sets its own.
    const yieldMs = opts.yieldMs ?? 0;
    // NOTE a microtask per batch, not a loop over the window's batches: what a batch queued
    // (the channel core's flushes and acks are microtasks) must run before the next batch.
    // A loop saved ~0.1 µs a batch and raised the output-rule delay (docs/BENCHMARKS.md).
    if (yieldMs > 0 && performance.now() - lastYield < yieldMs) queueMicrotask(run);
    else setImmediate(afterTurn);
  });
  const waiting = (): boolean => {
    const state = actor.getSnapshot().value;
    return state === 'waitingForInterrupt' || state === 'waitingUntil';
  };

  const actor: CpuActor = createActor(
    cpuMachine.provide({
      actions: {
        scheduleBatch: queueBatch,
        setRunTarget: ({ event }) => {
          if (event.type === 'cpu.runUntil') target = event.icount;
        },
        awaitInput: () => {
          const id = ++waitId;
          m.env.idle(m).then(
            () => {
              if (stopped || id !== waitId || !waiting()) return;
              lastYield = performance.now();
              actor.send(INPUT);
            },
            (err: unknown) => {
              if (stopped || id !== waitId || !waiting()) return;
              envError = err;
              actor.send(ENV_FAILED);
            },
          );
        },
        swapToLiveEnv: ({ event }) => {
          if (event.type !== 'cpu.takeover') return;
          const env = opts.takeoverEnv?.(event.mode);
          if (!env) throw new Error('cpu.takeover: no env to switch to');
          m.env = env;
        },
        reportHalt: () => opts.onHalt?.(m.hart.haltCode ?? 0),
        reportFault: () => {
          const err = envError;
          envError = undefined;
          const message = err === undefined ? (m.hart.fault?.message ?? 'unknown fault') : err instanceof Error ? err.message : String(err);
          opts.onFault?.(message, err);
        },
      },
    }),
    { ...(opts.inspect ? { inspect: opts.inspect } : {}), ...(opts.id === undefined ? {} : { id: opts.id }) },
  );
  actor.subscribe({ complete: () => { stopped = true; } });
  const stop = actor.stop.bind(actor);
  actor.stop = () => {
    stopped = true;
    return stop();
  };
  bindings.set(actor, opts);
  return actor;
}

export type { CpuMode };

export interface CpuRunOptions extends Omit<CpuActorOptions, 'onHalt' | 'onFault' | 'onBatch' | 'takeoverEnv'> {
  /** How the CPU runs from here: for a new actor the `cpu.start` mode, for an adopted one the takeover's. */
  mode: CpuMode;
  signal?: AbortSignal;
  /** Once per batch with the machine's exit, after the chart took its step. */
  onBatch?: (exit: Exit) => void;
  /** Stop exactly at this absolute icount (`cpu.runUntil`); the outcome says `untilReason`. */
  until?: number;
  untilReason?: 'until' | 'limit';
  /**
   * Adopt this CPU, paused at a batch boundary in replay (a backup's, after its drain), and
   * take it over on the same machine: `cpu.takeover` installs `env`. No new CPU is built.
   */
  adopt?: { cpu: CpuActor; env: Env };
}

const EXIT_OF: Record<BatchExit, Exit> = {
  budget: Exit.Budget, request: Exit.Request, wfi: Exit.Wfi, halt: Exit.Halt, fault: Exit.Fault, target: Exit.Budget, horizon: Exit.Budget,
};

/**
 * Run a machine under its CPU chart until the guest halts or faults, `until` is reached, or
 * `signal` aborts; `done` rejects only if the env fails (a replay divergence, a deterministic
 * guest that can never wake). The returned actor takes `cpu.pause` / `cpu.resume` (flow
 * control) while it runs.
 */
export function runOnCpuActor(m: Machine, opts: CpuRunOptions): { actor: CpuActor; done: Promise<RunOutcome> } {
  const t0 = performance.now();
  let settle!: (o: RunOutcome) => void;
  let fail!: (e: unknown) => void;
  const done = new Promise<RunOutcome>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  let over = false;
  const finish = (o: Omit<RunOutcome, 'icount' | 'seconds'>): void => {
    if (over) return;
    over = true;
    settle({ ...o, icount: m.icount, seconds: (performance.now() - t0) / 1000 });
  };
  const { signal, onBatch, id, mode, until, untilReason, adopt, ...rest } = opts;
  const hooks: CpuHooks = {
    onBatch: (exit) => {
      onBatch?.(EXIT_OF[exit]);
      if (exit === 'target') finish({ reason: untilReason ?? 'until' });
    },
    onHalt: (code) => finish({ reason: 'halt', code }),
    onFault: (_message, error) => {
      if (error !== undefined) {
        if (over) return;
        over = true;
        fail(error);
      } else finish({ reason: 'fault', ...(m.hart.fault ? { fault: m.hart.fault } : {}) });
    },
  };
  let actor: CpuActor;
  if (adopt) {
    actor = adopt.cpu;
    const bound = bindings.get(actor);
    if (!bound) throw new Error('runOnCpuActor: not a CPU actor of this runtime');
    if (mode === 'replay') throw new Error('runOnCpuActor: a takeover leaves replay');
    if (!actor.getSnapshot().matches('paused')) throw new Error(`cpu.takeover: the CPU is not paused at a batch boundary (${JSON.stringify(actor.getSnapshot().value)})`);
    Object.assign(bound, hooks, { takeoverEnv: () => adopt.env, yieldMs: rest.yieldMs ?? 0 });
    if (rest.batch !== undefined) bound.batch = rest.batch;
  } else {
    actor = createCpuActor(m, { ...rest, ...hooks, ...(id === undefined ? {} : { id }) });
  }
  const abort = (): void => {
    // The chart hears the stop (no batch starts after it) before the actor is torn down.
    if (actor.getSnapshot().status === 'active') actor.send({ type: 'cpu.stop' });
    actor.stop();
    finish({ reason: 'aborted' });
  };
  if (signal?.aborted) abort();
  else {
    signal?.addEventListener('abort', abort, { once: true });
    void done.then(() => signal?.removeEventListener('abort', abort), () => signal?.removeEventListener('abort', abort));
    if (adopt) actor.send({ type: 'cpu.takeover', mode: mode as 'live' | 'record' });
    else {
      actor.start();
      actor.send({ type: 'cpu.start', mode });
    }
    if (until !== undefined) actor.send({ type: 'cpu.runUntil', icount: until });
  }
  return { actor, done };
}
