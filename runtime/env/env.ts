import type { ValueKind } from '../types.js';
import type { Machine } from '../machine.js';

/**
 * The one seam through which every non-deterministic input enters the machine (DESIGN §2).
 * LiveEnv reads the host (clock, entropy, stdin, sockets); DeterministicEnv derives
 * everything from icount and a seed; RecordingEnv wraps a live one and logs; ReplayEnv reads
 * only the log and throws on a mismatch. The CPU and devices never touch Date, crypto,
 * Math.random, timers or sockets.
 */
export interface Env {
  readonly mode: 'live' | 'deterministic' | 'record' | 'replay';
  /**
   * A value the guest reads during the instruction that follows `icount` retired ones.
   * mtime: 10 MHz ticks; rtc: µs since the epoch (ns would pass 2^53); seed: 16 bits of entropy. 64-bit values
   * are returned as (exact, < 2^53) numbers; the device picks the half it needs.
   */
  value(kind: ValueKind, icount: number): number;
  /**
   * The icount at which the next asynchronous input must land (or, on replay, the newest
   * icount the log allows to reach). The runner never lets a batch cross it.
   */
  nextAt(icount: number): number;
  /** Apply every asynchronous input due at `m.icount`: memory writes, pending bits. Between instructions only. */
  deliverDue(m: Machine): void;
  /**
   * The hart sleeps in `wfi` (or replay reached its horizon): resolve once an input may be due.
   * Deterministic envs advance virtual time instead of waiting.
   */
  idle(m: Machine): Promise<void>;
}
