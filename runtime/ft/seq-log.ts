import type { LogEntry, LogPayload } from '../log/entry.js';

/**
 * Numbers the entries of one log stream (DESIGN §2: `seq` numbers entries) and hands them to
 * where they go: a log file, or the logging channel. Keeps the newest icount so a caller can
 * stamp heartbeats and markers without asking the machine.
 */
export class SeqLog {
  private next: number;
  lastIcount = 0;

  constructor(private readonly out: (e: LogEntry) => void, firstSeq = 0) {
    this.next = firstSeq;
  }

  /** Seq of the newest entry appended (-1 before the first). */
  get lastSeq(): number {
    return this.next - 1;
  }

  append(payload: LogPayload, icount: number): number {
    const seq = this.next++;
    this.lastIcount = icount;
    this.out({ ...payload, seq, icount } as LogEntry);
    return seq;
  }
}
