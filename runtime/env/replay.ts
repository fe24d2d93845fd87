import type { Env } from './env.js';
import type { Machine } from '../machine.js';
import type { ValueKind } from '../types.js';
import type { LogEntry } from '../log/entry.js';

/** The backup did something the primary did not (DESIGN §3, divergence): never ignored. */
export class DivergenceError extends Error {
  constructor(
    readonly seq: number,
    readonly icount: number,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`divergence at seq ${seq}, icount ${icount}: expected ${expected}, got ${got}`);
    this.name = 'DivergenceError';
  }
}

export interface ReplayChecks {
  /** Digest of the replaying machine, compared with the primary's `digest` entries. */
  digest?: (m: Machine) => string;
  /** How many outputs the replaying machine has produced, compared with `output` markers. */
  outputCount?: () => number;
}

const describe = (e: LogEntry | undefined): string => {
  if (!e) return 'no entry';
  switch (e.type) {
    case 'value': return `${e.kind} read at icount ${e.icount}`;
    default: return `${e.type} at icount ${e.icount}`;
  }
};

/**
 * The backup's environment: every input comes from the log, nothing from the host (DESIGN §2).
 *
 * Entries fall in three groups. Passive ones (progress, snapshot) only let the machine run
 * further. Value entries are consumed by the reads they answer, and must match the read's kind
 * and icount. Every other entry takes effect *between* instructions at exactly its icount, so
 * nextAt() stops the batch there and deliverDue() applies or checks it.
 *
 * NOTE: the machine may run only up to `horizon`, the newest icount the log vouches for.
 */
export class ReplayEnv implements Env {
  readonly mode: Env['mode'] = 'replay';
  /** The highest icount the log lets the machine reach. */
  horizon = 0;
  /** Seq of the newest entry received. */
  lastSeq = -1;
  /** Seq of the newest entry applied or checked (what the backup has consumed). */
  appliedSeq = -1;
  /** The newest mtime the guest read: a backup going live continues its clock from here. */
  lastMtime = 0;
  /** The guest's exit code once the primary's `end` entry has been reached. */
  ended: { code: number; icount: number } | undefined;

  private readonly queue: LogEntry[] = [];
  private head = 0;
  /**
   * Where nextAt's scan stopped: every entry from `head` up to here is a value or passive one
   * (value entries wait for the reads that consume them), so the next scan resumes here
   * instead of stepping over them again at every slice.
   */
  private scan = 0;
  private wake: (() => void) | undefined;

  constructor(private readonly checks: ReplayChecks = {}) {}

  /** Append the next entry of the primary's log (in seq order). */
  push(e: LogEntry): void {
    if (e.seq !== this.lastSeq + 1 && this.lastSeq !== -1) {
      throw new DivergenceError(e.seq, e.icount, `seq ${this.lastSeq + 1}`, `seq ${e.seq}`);
    }
    this.lastSeq = e.seq;
    // A value read at icount X happened inside instruction X+1, which therefore retired.
    const reach = e.type === 'value' ? e.icount + 1 : e.icount;
    if (reach > this.horizon) this.horizon = reach;
    this.queue.push(e);
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Entries received but not yet consumed by the machine. */
  get pending(): number {
    return this.queue.length - this.head;
  }

  /** Nothing left to replay: the machine stands at the horizon with no entry waiting. */
  drained(m: Machine): boolean {
    this.skipPassive();
    return this.head >= this.queue.length && m.icount >= this.horizon;
  }

  value(kind: ValueKind, icount: number): number {
    this.skipPassive();
    const e = this.queue[this.head];
    if (!e || e.type !== 'value' || e.kind !== kind || e.icount !== icount) {
      throw new DivergenceError(e?.seq ?? this.lastSeq + 1, icount, describe(e), `${kind} read at icount ${icount}`);
    }
    this.consume();
    if (kind === 'mtime') this.lastMtime = e.value;
    return e.value;
  }

  nextAt(icount: number): number {
    this.skipPassive();
    // NOTE the next entry that takes effect between instructions may wait behind value
    // entries (a `seed` read inside instruction X+1, then a timer at X+1): the reads consume
    // those during the batch, so the batch must stop at the first entry that is not a value.
    // A value entry's icount is always below the horizon (its read retired), and the queue is
    // in icount order, so the first other entry decides.
    const q = this.queue;
    let i = this.scan > this.head ? this.scan : this.head;
    for (; i < q.length; i++) {
      const t = q[i]!.type;
      if (t !== 'value' && t !== 'progress' && t !== 'snapshot') break;
    }
    this.scan = i;
    const e = q[i];
    return e !== undefined && e.icount < this.horizon ? Math.max(icount, e.icount) : this.horizon;
  }

  deliverDue(m: Machine): void {
    for (;;) {
      this.skipPassive();
      const e = this.queue[this.head];
      if (!e) return;
      if (e.icount > m.icount) return;
      if (e.type === 'value') {
        if (e.icount < m.icount) throw new DivergenceError(e.seq, m.icount, describe(e), 'no such read');
        return;
      }
      if (e.icount < m.icount) throw new DivergenceError(e.seq, m.icount, describe(e), `machine already at icount ${m.icount}`);
      this.apply(m, e);
      this.consume();
    }
  }

  idle(m: Machine): Promise<void> {
    this.skipPassive();
    const e = this.queue[this.head];
    if (e && (e.icount <= m.icount || m.icount < this.horizon)) return Promise.resolve();
    if (!e && m.icount < this.horizon) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  /** Wake an idle() waiter without an entry (the node is stopping or going live). */
  interrupt(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private apply(m: Machine, e: LogEntry): void {
    switch (e.type) {
      case 'timer':
        m.clint.raiseTimer();
        return;
      case 'console':
        m.uart.receive(e.byte);
        return;
      case 'digest': {
        const got = this.checks.digest?.(m);
        if (got !== undefined && got !== e.digest) throw new DivergenceError(e.seq, e.icount, `digest ${e.digest}`, `digest ${got}`);
        return;
      }
      case 'output': {
        const got = this.checks.outputCount?.();
        if (got !== undefined && got !== e.count) {
          throw new DivergenceError(e.seq, e.icount, `${e.count} outputs`, `${got} outputs`);
        }
        return;
      }
      case 'end':
        this.ended = { code: e.code, icount: e.icount };
        return;
      case 'net-rx':
      case 'disk-read':
      case 'disk-done': {
        // The same device-state change the primary made when it took the input from its backend.
        const io = m.io;
        if (!io) throw new DivergenceError(e.seq, e.icount, describe(e), 'a machine without a virtio disk or NIC');
        if (!io.apply(e)) {
          throw new DivergenceError(e.seq, e.icount, describe(e), e.type === 'net-rx' ? 'no receive buffer posted' : `no pending disk request ${e.tag}`);
        }
        return;
      }
      case 'value':
      case 'progress':
      case 'snapshot':
        return;
    }
  }

  private skipPassive(): void {
    for (;;) {
      const e = this.queue[this.head];
      if (!e || (e.type !== 'progress' && e.type !== 'snapshot')) return;
      this.consume();
    }
  }

  private consume(): void {
    this.appliedSeq = this.queue[this.head]!.seq;
    this.head++;
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.scan = Math.max(0, this.scan - this.head);
      this.head = 0;
    }
  }
}
