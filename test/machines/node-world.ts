// The wire around a real PrimaryNode, for the model tests of the primary chart: the node, its
// machine and guest, its output gate and its CPU chart are the product's; only the logging
// channel's far end (a backup that acks when told) and the arbiter's store are fakes.
import { Subject } from 'rxjs';
import type { ChannelEvent, Lag, PrimaryEnd } from '../../runtime/channel/channel.js';
import type { LogEntry } from '../../runtime/log/entry.js';
import type { Arbiter } from '../../runtime/arbiter/arbiter.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';

/** The primary's end of a logging channel whose backup is played by the test. */
export class Wire implements PrimaryEnd {
  readonly received: LogEntry[] = [];
  ackedSeq = -1;
  closed = false;
  readonly lag: Lag = { entries: 0, bytes: 0, ms: 0 };
  private readonly acks = new Subject<number>();
  private readonly pressure = new Subject<boolean>();
  private readonly events = new Subject<ChannelEvent>();
  readonly acked$ = this.acks.asObservable();
  readonly pressure$ = this.pressure.asObservable();
  readonly events$ = this.events.asObservable();
  private beat: NodeJS.Timeout | undefined;

  constructor() {
    this.alive(true);
  }

  send(e: LogEntry): void {
    if (!this.closed) this.received.push(e);
  }

  close(): void {
    this.closed = true;
    this.alive(false);
  }

  /** Acknowledge everything received so far. */
  ackAll(): void {
    const last = this.received.at(-1);
    if (last) this.ack(last.seq);
  }

  ack(seq: number): void {
    this.ackedSeq = Math.max(this.ackedSeq, seq);
    this.acks.next(this.ackedSeq);
  }

  /** The backup's liveness as the primary sees it: a repeated ack (of nothing new) every 10 ms. */
  alive(on: boolean): void {
    clearInterval(this.beat);
    this.beat = on ? setInterval(() => this.acks.next(this.ackedSeq), 10) : undefined;
  }

  highWater(on: boolean): void {
    this.pressure.next(on);
  }

  fail(): void {
    this.alive(false);
    this.events.next({ type: 'channel.failed', error: new Error('cut by the test') });
  }
}

/**
 * An in-process arbiter that keeps the order and time of every test-and-set and answers only
 * when told (`answer()`), so a claim can be seen in flight. The verdict is the real store's.
 */
export class RecordingArbiter implements Arbiter {
  readonly inner = new InProcessArbiter();
  readonly claims: { generation: number; claimant: string; atMs: number; verdict?: 'won' | 'lost' }[] = [];
  private readonly waiting: (() => void)[] = [];
  async testAndSet(pairId: string, generation: number, claimant: string): Promise<'won' | 'lost'> {
    const c: (typeof this.claims)[number] = { generation, claimant, atMs: performance.now() };
    this.claims.push(c);
    await new Promise<void>((r) => this.waiting.push(r));
    c.verdict = await this.inner.testAndSet(pairId, generation, claimant);
    return c.verdict;
  }
  /** Let the oldest claim in flight reach the store. */
  answer(): void {
    const next = this.waiting.shift();
    if (!next) throw new Error('no claim in flight');
    next();
  }
  get inFlight(): number {
    return this.waiting.length;
  }
  holder(pairId: string, generation: number) {
    return this.inner.holder(pairId, generation);
  }
  close() {
    return this.inner.close();
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` until it holds or `ms` pass; true if it held. */
export async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) return false;
    await sleep(2);
  }
  return true;
}
