import { closeSync, openSync, readSync } from 'node:fs';
import { asyncScheduler, Observable, type SchedulerLike, type Subscription } from 'rxjs';
import type { PeerBeats } from './heartbeat-shared.js';

export type PeerStatus = 'peer.silent' | 'peer.heard';

/**
 * Failure detection (DESIGN §3): 'peer.silent' once nothing arrived on `activity$` for
 * `timeoutMs` (counted from subscription, then from the latest arrival), 'peer.heard' on the
 * first arrival after that. Suspicion only: deciding what to do is the caller's job. When
 * `activity$` completes, the silence still gets reported, then the watchdog completes.
 *
 * The silence is confirmed one event-loop turn after the timer: when this thread itself was
 * stalled (GC, a long batch, a descheduled core), the timer and the peer's queued bytes are
 * both due at once, and Node runs timers before it reads sockets. The second look comes
 * after the poll phase, so only a silence the socket confirms counts; it costs one turn.
 */
/**
 * With `maxTimeoutMs` above `timeoutMs` the timeout fits the host: GAP_FACTOR times the
 * longest gap between arrivals seen in the last one or two GAP_WINDOW_MS windows, between
 * the two bounds (the ceiling while there is no history). A calm host (heartbeats every few
 * ms) is watched at `timeoutMs`; a host that just stalled a side for 300 ms is watched at
 * 1.2 s until it has been calm for a window again, so its stalls do not fail a healthy
 * pair over. 4, not 2: on a 2-core host at load 20 a peer's next long gap was 2-3 times the
 * longest one before it (docs/BENCHMARKS.md).
 */
export const GAP_FACTOR = 4;
export const GAP_WINDOW_MS = 2000;
/**
 * A loaded host stalls a process now and then, seconds apart (docs/BENCHMARKS.md): its own
 * stalls are remembered 5–10 s, longer than the peer's gaps, so one stall announces the next.
 */
export const STALL_WINDOW_MS = 5000;
/** While the peer is silent, how often its heartbeats are looked at (ms). */
export const BEAT_POLL_MS = 5;
/** How long a gap between the peer's messages as long as the floor timeout is remembered. */
export const LONG_GAP_MS = 10_000;

/**
 * What this thread itself could not do: `stalledMs` is the total time it could not run (the
 * host took its core, a GC, its own long work), including a stall still in progress;
 * `peakMs` the longest single stall in the last one or two STALL_WINDOW_MS windows.
 */
export interface StallClock {
  stalledMs(): number;
  peakMs(): number;
}

/**
 * This thread's run-queue wait so far, in ms: the time it was ready to run and the kernel gave
 * its core to something else (Linux, /proc/thread-self/schedstat, second field, ns). Undefined
 * where the file is missing. One pread of a small file on an fd kept open: a few µs.
 */
export function runQueueWaitReader(): (() => number) | undefined {
  let fd: number;
  try {
    fd = openSync('/proc/thread-self/schedstat', 'r');
  } catch {
    return undefined;
  }
  const buf = Buffer.alloc(96);
  const read = (): number => {
    const n = readSync(fd, buf, 0, buf.length, 0);
    // "<on-cpu ns> <run-queue wait ns> <timeslices>\n"
    let i = 0;
    while (i < n && buf[i] !== 0x20) i++;
    let ns = 0;
    for (i++; i < n && buf[i]! >= 0x30 && buf[i]! <= 0x39; i++) ns = ns * 10 + (buf[i]! - 0x30);
    return ns / 1e6;
  };
  try {
    read();
  } catch {
    closeSync(fd);
    return undefined;
  }
  return read;
}

/** How stale a run-queue reading may be (ms). */
const READ_EVERY_MS = 1;

/**
 * Measures this thread's stalls, two ways: a timer due every `periodMs` that runs later than
 * that by more than `slackMs` counts the lateness (a GC, its own long work, a lost core), and
 * where the kernel tells it, the thread's run-queue wait (runQueueWaitReader): on a host with
 * more runnable threads than cores a busy thread is denied its core in many short turns that
 * no single timer lateness shows. Between two looks `stalledMs` grows by the larger of the
 * two; `peakMs` is the longest single lateness. Cheap: one unref'd timer per thread, a pread per look.
 *
 * Why a watchdog needs it (docs/BENCHMARKS.md, "Failure detection across processes"): on a
 * loaded host a process loses its core for hundreds of ms. A primary that was itself stalled
 * sent nothing for that long, so its backup had nothing to ack: the silence of the acks it
 * then sees is its own doing. And a host that stalls this process stalls its peer alike, so
 * the peer's gaps are to be expected as long as this process's own stalls are that long.
 */
export class StallMeter implements StallClock {
  private prev: number;
  private total = 0;
  private peak = 0;
  private prevPeak = 0;
  private windowAt: number;
  private readonly waitAtStart: number;

  constructor(
    private readonly periodMs = 5,
    private readonly slackMs = 5,
    private readonly now: () => number = () => performance.now(),
    private readonly runQueueWait: (() => number) | undefined = runQueueWaitReader(),
  ) {
    this.prev = this.windowAt = now();
    this.waitAtStart = runQueueWait?.() ?? 0;
    setInterval(() => this.tick(), periodMs).unref();
  }

  /** The stall before now if the timer has not run since `prev`: late beyond the slack. */
  private late(now: number): number {
    const late = now - this.prev - this.periodMs;
    return late > this.slackMs ? late : 0;
  }

  private tick(): void {
    const now = this.now();
    const late = this.late(now);
    this.prev = now;
    if (late === 0) return;
    this.total += late;
    this.rotate(now);
    if (late > this.peak) this.peak = late;
  }

  private rotate(now: number): void {
    if (now - this.windowAt < STALL_WINDOW_MS) return;
    // Two windows without a look and the history is gone.
    this.prevPeak = now - this.windowAt < 2 * STALL_WINDOW_MS ? this.peak : 0;
    this.peak = 0;
    this.windowAt = now;
  }

  /** The stall total as of the previous look, and each measure's reading then. */
  private looked = { total: 0, late: 0, waited: 0 };

  /** The run-queue wait as last read, and when: read at most once per READ_EVERY_MS. */
  private waited = 0;
  private waitedAt = -Infinity;

  stalledMs(): number {
    const now = this.now();
    const late = this.total + this.late(now);
    if (!this.runQueueWait) return late;
    // Asked on every arrival from the peer (thousands a second under load): a pread each time
    // cost 3-4 % of a node serving dns; a reading a millisecond old is as good for a watchdog.
    if (now - this.waitedAt >= READ_EVERY_MS) {
      this.waited = this.runQueueWait() - this.waitAtStart;
      this.waitedAt = now;
    }
    const waited = this.waited;
    // Between two looks the larger of the two measures counts (they overlap: a late timer
    // includes the run-queue wait inside it), so the total never goes back.
    const l = this.looked;
    l.total += Math.max(0, late - l.late, waited - l.waited);
    l.late = Math.max(l.late, late);
    l.waited = waited;
    return l.total;
  }

  peakMs(): number {
    const now = this.now();
    this.rotate(now);
    const late = this.late(now);
    return Math.max(this.peak, this.prevPeak, late);
  }
}

let threadMeter: StallMeter | undefined;
/** This thread's stall meter (each worker has its own), started on first use. */
export const threadStallMeter = (): StallMeter => (threadMeter ??= new StallMeter());

export const watchdog$ = (
  activity$: Observable<unknown>,
  timeoutMs: number,
  scheduler: SchedulerLike = asyncScheduler,
  maxTimeoutMs = timeoutMs,
  /**
   * Given, a stream that completes before a value this accepts has failed (a killed peer's
   * socket is reset at once): its silence is reported one turn later, not after the timeout.
   */
  cleanEnd?: (value: unknown) => boolean,
  /**
   * Given, this thread's own stalls are not the peer's silence: time this thread could not
   * run is left out of the silence, and the adaptive timeout (maxTimeoutMs) is at least
   * GAP_FACTOR times this thread's own longest recent stall (StallMeter says why).
   */
  ownStall?: StallClock,
  /**
   * Given, the peer's heartbeats as a thread that sleeps between them received them
   * (heartbeat.ts): a beat is hearing the peer as much as an arrival on `activity$` is, so the
   * silence is the shorter of the two. The adaptive timeout stays what the log and this
   * thread's stalls make it, and the beats' own longest recent gap widens it too: beats only
   * ever shorten a silence, never the timeout (measured: a timeout that followed the beats
   * alone, 100 ms while they came every 5 ms, failed pairs over when a channel stall and a
   * late beat met; docs/BENCHMARKS.md, "Detection, third pass"). While silent, the beats are
   * looked at every BEAT_POLL_MS, so a beat ends the silence without an arrival on `activity$`.
   */
  beats?: PeerBeats,
): Observable<PeerStatus> =>
  new Observable<PeerStatus>((sub) => {
    let silent = false;
    let ended = false;
    const adaptive = maxTimeoutMs > timeoutMs;
    // The longest gap between arrivals in this window and the one before (see GAP_FACTOR).
    let last = scheduler.now();
    let windowAt = last;
    let peak = 0;
    // No history yet: the first window is watched at the ceiling. A process's first second
    // (JIT warm-up of the guest's code) stalls it most, and is no evidence of a calm host.
    let prevPeak = adaptive ? maxTimeoutMs / GAP_FACTOR : 0;
    // Gaps that reached the floor timeout (never on a calm host) are remembered longer: a
    // loaded host stalls a process seconds apart, and one stall announces the next.
    let longPeak = 0;
    let longAt = last;
    let endIsClean = cleanEnd === undefined;
    // Own stall counter as of the latest arrival: what this thread missed since is not silence.
    let stalledAtLast = ownStall?.stalledMs() ?? 0;
    const timeout = (): number => {
      if (!adaptive) return timeoutMs;
      if (longPeak > 0 && scheduler.now() - longAt >= LONG_GAP_MS) longPeak = 0;
      const gap = Math.max(peak, prevPeak, longPeak, ownStall?.peakMs() ?? 0, beats ? beats.gapPeakMs() : 0);
      return Math.min(maxTimeoutMs, Math.max(timeoutMs, GAP_FACTOR * gap));
    };
    /** How long the peer has been silent while this thread could watch. */
    const quiet = (): number => {
      const q = scheduler.now() - last - (ownStall ? ownStall.stalledMs() - stalledAtLast : 0);
      return beats ? Math.min(q, beats.sinceHeardMs()) : q;
    };
    // NOTE one timer per silence period, not one per arrival: an arrival only notes its time,
    // and the timer, when it fires, waits again for what is left (acks come once per batch).
    let timer: Subscription | undefined;
    /** While silent: a beat heard since the silence began ends it (see `beats`). */
    let silentAt = 0;
    const poll = (): void => {
      timer = undefined;
      if (!silent) return;
      if (beats!.sinceHeardMs() < scheduler.now() - silentAt) {
        silent = false;
        sub.next('peer.heard');
        timer = scheduler.schedule(check, timeout());
        return;
      }
      timer = scheduler.schedule(poll, BEAT_POLL_MS);
    };
    const report = (): void => {
      timer = undefined;
      silent = true;
      silentAt = scheduler.now();
      sub.next('peer.silent');
      if (ended) sub.complete();
      else if (beats) timer = scheduler.schedule(poll, BEAT_POLL_MS);
    };
    /** Re-arms for what is left of the timeout; true when the whole timeout has passed quietly. */
    const waitedEnough = (): boolean => {
      const left = timeout() - quiet();
      if (left <= 0) return true;
      timer = scheduler.schedule(check, left);
      return false;
    };
    // The second look, one turn after the timer: an arrival read meanwhile re-arms instead.
    const confirm = (): void => {
      timer = undefined;
      if (waitedEnough()) report();
    };
    const check = (): void => {
      timer = undefined;
      if (!waitedEnough()) return;
      // Ended: nothing more can arrive, no second look needed.
      if (ended) report();
      else timer = scheduler.schedule(confirm, 0);
    };
    timer = scheduler.schedule(check, timeout());
    const source = activity$.subscribe({
      next: (value) => {
        if (!endIsClean) endIsClean = cleanEnd!(value);
        const now = scheduler.now();
        if (adaptive) {
          if (now - windowAt >= GAP_WINDOW_MS) {
            prevPeak = peak;
            peak = 0;
            windowAt = now;
          }
          if (now - last > peak) peak = now - last;
          if (now - last >= timeoutMs && (now - last >= longPeak || now - longAt >= LONG_GAP_MS)) {
            longPeak = now - last;
            longAt = now;
          }
        }
        last = now;
        if (ownStall) stalledAtLast = ownStall.stalledMs();
        if (silent) {
          silent = false;
          // The beats' poll, if any, gives way to the silence timer below.
          timer?.unsubscribe();
          timer = undefined;
          sub.next('peer.heard');
        }
        if (!timer) timer = scheduler.schedule(check, timeout());
      },
      error: (err: unknown) => sub.error(err),
      complete: () => {
        ended = true;
        if (silent) {
          timer?.unsubscribe();
          sub.complete();
        }
        else if (!endIsClean) {
          timer?.unsubscribe();
          timer = scheduler.schedule(report, 0);
        }
      },
    });
    return () => {
      source.unsubscribe();
      timer?.unsubscribe();
    };
  });
