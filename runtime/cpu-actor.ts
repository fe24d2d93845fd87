import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import { cpuMachine, type BatchExit, type CpuMode } from '../machines/cpu.machine.js';
import type { Machine } from './machine.js';
import type { Env } from './env/env.js';
import { Exit, exitName } from './types.js';
import type { RunOutcome } from './runner.js';

export interface CpuActorOptions {
  /** Largest batch of instructions (one `cpu.batchEnded` each); read before every batch. */
  batch?: number;
  /** Runs a scheduled batch later (default: setImmediate). Tests pass their own to step batches by hand. */
  schedule?: (runBatch: () => void) => void;
  /** The env to switch to on `cpu.takeover` (go-live). */
  liveEnv?: () => Env;
  onHalt?: (code: number) => void;
  onFault?: (message: string) => void;
  /** Called once per batch with its exit, after the event was sent. */
  onBatch?: (exit: BatchExit) => void;
  inspect?: Observer<InspectionEvent> | ((e: InspectionEvent) => void);
  /** Actor id, for inspection. */
  id?: string;
}

const DEFAULT_BATCH = 1_000_000;

/**
 * The CPU control chart driving a real machine (DESIGN §4): the chart decides whether
 * another batch runs; each batch is plain `machine.step()` and answers with exactly one
 * `cpu.batchEnded`. A batch is started on a later tick, never inside the chart's own step,
 * and once started it runs to its end and reports truthfully, even if a pause came meanwhile.
 */
export function createCpuActor(m: Machine, opts: CpuActorOptions = {}): Actor<typeof cpuMachine> {
  const schedule = opts.schedule ?? ((run: () => void) => void setImmediate(run));
  let target = Infinity;
  let stopped = false;
  const actor: Actor<typeof cpuMachine> = createActor(
    cpuMachine.provide({
      actions: {
        scheduleBatch: () => {
          schedule(() => {
            // After cpu.stop the machine is to be reloaded: a batch still queued must not touch it.
            if (stopped || actor.getSnapshot().matches('stopped')) return;
            const before = m.icount;
            const exit = m.step(Math.min(opts.batch ?? DEFAULT_BATCH, Math.max(0, target - before)));
            let name: BatchExit = exitName(exit) as BatchExit;
            if (m.icount >= target && exit !== Exit.Halt && exit !== Exit.Fault) {
              name = 'target';
              target = Infinity;
            } else if (exit === Exit.Budget && m.icount === before) {
              // The env's horizon is now (replay waiting for its log): wait like wfi.
              name = 'wfi';
            }
            actor.send({ type: 'cpu.batchEnded', exit: name });
            opts.onBatch?.(name);
          });
        },
        setRunTarget: ({ event }) => {
          if (event.type === 'cpu.runUntil') target = event.icount;
        },
        awaitInput: () => {
          void m.env.idle(m).then(() => {
            if (!stopped && actor.getSnapshot().matches('waitingForInterrupt')) actor.send({ type: 'cpu.inputDelivered' });
          });
        },
        swapToLiveEnv: () => {
          if (!opts.liveEnv) throw new Error('cpu.takeover: no live env to switch to');
          m.env = opts.liveEnv();
        },
        reportHalt: () => opts.onHalt?.(m.hart.haltCode ?? 0),
        reportFault: () => opts.onFault?.(m.hart.fault?.message ?? 'unknown fault'),
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
  return actor;
}

export type { CpuMode };

export interface CpuRunOptions extends Omit<CpuActorOptions, 'onHalt' | 'onFault' | 'onBatch'> {
  mode: CpuMode;
  signal?: AbortSignal;
  /** Once per batch with the machine's exit, after the chart took its step. */
  onBatch?: (exit: Exit) => void;
  /** Actor id, for inspection. */
  id?: string;
}

const EXIT_OF: Record<BatchExit, Exit> = {
  budget: Exit.Budget, request: Exit.Request, wfi: Exit.Wfi, halt: Exit.Halt, fault: Exit.Fault, target: Exit.Budget,
};

/**
 * Run a machine under its CPU chart until the guest halts or faults, or `signal` aborts: the
 * same outcome as `runMachine`, with every batch decided by the chart. The returned actor
 * takes `cpu.pause` / `cpu.resume` (flow control) while it runs.
 */
export function runOnCpuActor(m: Machine, opts: CpuRunOptions): { actor: Actor<typeof cpuMachine>; done: Promise<RunOutcome> } {
  const t0 = performance.now();
  let settle!: (o: RunOutcome) => void;
  const done = new Promise<RunOutcome>((resolve) => { settle = resolve; });
  let over = false;
  const finish = (o: Omit<RunOutcome, 'icount' | 'seconds'>): void => {
    if (over) return;
    over = true;
    settle({ ...o, icount: m.icount, seconds: (performance.now() - t0) / 1000 });
  };
  const { signal, onBatch, id, mode, ...rest } = opts;
  const actor = createCpuActor(m, {
    ...rest,
    onBatch: (exit) => onBatch?.(EXIT_OF[exit]),
    onHalt: (code) => finish({ reason: 'halt', code }),
    onFault: () => finish({ reason: 'fault', ...(m.hart.fault ? { fault: m.hart.fault } : {}) }),
    ...(id === undefined ? {} : { id }),
  });
  const abort = (): void => {
    actor.stop();
    finish({ reason: 'aborted' });
  };
  if (signal?.aborted) abort();
  else {
    signal?.addEventListener('abort', abort, { once: true });
    void done.then(() => signal?.removeEventListener('abort', abort));
    actor.start();
    actor.send({ type: 'cpu.start', mode });
  }
  return { actor, done };
}
