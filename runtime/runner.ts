import { Exit, type GuestFault } from './types.js';
import type { Machine } from './machine.js';

export interface RunOptions {
  /** Stop after this many instructions from the start of this call. */
  maxInstructions?: number;
  /** Stop exactly at this absolute icount (a backup replays only up to its newest entry). */
  untilIcount?: number;
  /** Largest batch; smaller batches cost dispatch, larger ones delay host I/O. */
  batch?: number;
  signal?: AbortSignal;
  /** Called once per batch (never per instruction): the CPU actor's `cpu.batchEnded`. */
  onBatch?: (exit: Exit) => void;
  /** Yield to the event loop at least this often while the guest computes. */
  yieldMs?: number;
}

export interface RunOutcome {
  reason: 'halt' | 'fault' | 'limit' | 'until' | 'aborted';
  code?: number;
  fault?: GuestFault;
  icount: number;
  seconds: number;
}

const DEFAULT_BATCH = 1_000_000;
const DEFAULT_YIELD_MS = 4;

const yieldToHost = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function abortable(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  return new Promise((resolve, reject) => {
    const onAbort = (): void => resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * The host loop outside the CPU (TinyEMU's virt_machine_run): run a batch, and between
 * batches let Node serve sockets and stdin, sleep while the hart waits for an interrupt, and
 * stop on power-off, fault, a limit or abort. Rejects only if the env does (e.g. a replay
 * mismatch, or a deterministic guest that can never wake).
 */
export async function runMachine(m: Machine, opts: RunOptions = {}): Promise<RunOutcome> {
  const t0 = performance.now();
  const limit = opts.maxInstructions === undefined ? Infinity : m.icount + opts.maxInstructions;
  const until = opts.untilIcount ?? Infinity;
  const batch = opts.batch ?? DEFAULT_BATCH;
  const yieldMs = opts.yieldMs ?? DEFAULT_YIELD_MS;
  const { signal, onBatch } = opts;
  const done = (reason: RunOutcome['reason'], extra: Partial<RunOutcome> = {}): RunOutcome =>
    ({ reason, ...extra, icount: m.icount, seconds: (performance.now() - t0) / 1000 });

  let lastYield = t0;
  for (;;) {
    if (signal?.aborted) return done('aborted');
    if (m.icount >= until) return done('until');
    if (m.icount >= limit) return done('limit');
    const before = m.icount;
    const exit = m.step(Math.min(batch, until - before, limit - before));
    onBatch?.(exit);
    if (exit === Exit.Halt) return done('halt', { code: m.hart.haltCode ?? 0 });
    if (exit === Exit.Fault) return done('fault', m.hart.fault ? { fault: m.hart.fault } : {});
    // A zero-length batch means the env's horizon is now (replay waiting for the log): sleep like wfi.
    if (exit === Exit.Wfi || (exit === Exit.Budget && m.icount === before)) {
      await abortable(m.env.idle(m), signal);
      lastYield = performance.now();
    } else if (performance.now() - lastYield >= yieldMs) {
      await yieldToHost();
      lastYield = performance.now();
    }
  }
}
