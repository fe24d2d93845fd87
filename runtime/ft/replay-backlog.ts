/**
 * What a backup may acknowledge (DESIGN §3 Flow control). A backup acks an entry on receipt
 * (VMware FT): the output rule needs no more, and outputs wait least. But the primary bounds
 * only what is unacknowledged, so a backup whose replay falls behind would lag without bound,
 * and a failover would wait for all of that replay. So once the oldest entry received but not
 * yet replayed has waited longer than `lagMs`, the backup acks only what it has replayed: the
 * primary sees its oldest unacknowledged entry age, pauses at its time mark
 * (SendWindow `highWaterMs`), and runs again when the replay has caught up.
 *
 * Entries are tracked in arrival order with the icount they apply at; the log's icounts never
 * fall, so an entry is replayed once the machine's icount reaches it. NOTE not the replay
 * env's `appliedSeq`: the env consumes passive entries (progress, snapshot) as soon as they
 * come to its head, before the machine reaches their icount, so a log whose tail is
 * heartbeats would look replayed however far behind the machine is.
 */
export class ReplayBacklog {
  private seqs: number[] = [];
  private icounts: number[] = [];
  private times: number[] = [];
  private head = 0;
  /** The newest entry received. */
  private receivedSeq = -1;
  /** The newest entry the machine has reached. */
  private replayedSeq = -1;
  /** The last answer was short of what was received (the replay lags). */
  held = false;

  constructor(private readonly lagMs: number) {}

  /** `seq` was handed to the replay env at `now`, to apply at `icount`. */
  received(seq: number, icount: number, now: number): void {
    this.seqs.push(seq);
    this.icounts.push(icount);
    this.times.push(now);
    this.receivedSeq = seq;
  }

  /** The highest seq an ack may cover now, with the machine at `icount` (-1: none yet). */
  ackable(icount: number, now: number): number {
    while (this.head < this.seqs.length && this.icounts[this.head]! <= icount) {
      this.replayedSeq = this.seqs[this.head]!;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.seqs.length) {
      this.seqs = this.seqs.slice(this.head);
      this.icounts = this.icounts.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    this.held = this.head < this.seqs.length && now - this.times[this.head]! > this.lagMs;
    return this.held ? this.replayedSeq : this.receivedSeq;
  }

  /** How long the oldest entry not yet replayed has waited (ms; 0: none). */
  age(now: number): number {
    return this.head < this.seqs.length ? now - this.times[this.head]! : 0;
  }
}
