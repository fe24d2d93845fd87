import type { Exit, GuestFault } from './types.js';
import type { Machine } from './machine.js';
import type { Env } from './env/env.js';
import type { CpuMode } from '../machines/cpu.machine.js';
import { runOnCpuActor } from './cpu-actor.js';

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

const DEFAULT_YIELD_MS = 4;

/** The CPU chart's mode for an env: a deterministic run is live as far as FT goes (nothing logged). */
export const cpuModeOf = (env: Env): CpuMode => (env.mode === 'deterministic' ? 'live' : env.mode);

/**
 * The host loop outside the CPU (TinyEMU's virt_machine_run), as the CPU chart runs it: a
 * batch at a time, and between batches Node serves sockets and stdin, sleeps while the hart
 * waits for an interrupt, and stops on power-off, fault, a limit or abort (DESIGN §4). Rejects
 * only if the env does (e.g. a replay mismatch, or a deterministic guest that can never wake).
 */
export function runMachine(m: Machine, opts: RunOptions = {}): Promise<RunOutcome> {
  const limit = opts.maxInstructions === undefined ? Infinity : m.icount + opts.maxInstructions;
  const until = opts.untilIcount ?? Infinity;
  const stopAt = Math.min(limit, until);
  return runOnCpuActor(m, {
    mode: cpuModeOf(m.env),
    yieldMs: opts.yieldMs ?? DEFAULT_YIELD_MS,
    ...(opts.batch === undefined ? {} : { batch: opts.batch }),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onBatch ? { onBatch: opts.onBatch } : {}),
    ...(stopAt === Infinity ? {} : { until: stopAt, untilReason: until <= limit ? 'until' : 'limit' }),
  }).done;
}
