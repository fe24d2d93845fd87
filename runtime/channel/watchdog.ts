import { asyncScheduler, Observable, type SchedulerLike, type Subscription } from 'rxjs';

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
 * 600 ms until it has been calm for a window again, so its stalls do not fail a healthy
 * pair over.
 */
export const GAP_FACTOR = 2;
export const GAP_WINDOW_MS = 2000;

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
    let endIsClean = cleanEnd === undefined;
    const timeout = (): number =>
      adaptive ? Math.min(maxTimeoutMs, Math.max(timeoutMs, GAP_FACTOR * (peak > prevPeak ? peak : prevPeak))) : timeoutMs;
    // NOTE one timer per silence period, not one per arrival: an arrival only notes its time,
    // and the timer, when it fires, waits again for what is left (acks come once per batch).
    let timer: Subscription | undefined;
    const report = (): void => {
      timer = undefined;
      silent = true;
      sub.next('peer.silent');
      if (ended) sub.complete();
    };
    /** Re-arms for what is left of the timeout; true when the whole timeout has passed quietly. */
    const waitedEnough = (): boolean => {
      const left = timeout() - (scheduler.now() - last);
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
        }
        last = now;
        if (silent) {
          silent = false;
          sub.next('peer.heard');
        }
        if (!timer) timer = scheduler.schedule(check, timeout());
      },
      error: (err: unknown) => sub.error(err),
      complete: () => {
        ended = true;
        if (silent) sub.complete();
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
