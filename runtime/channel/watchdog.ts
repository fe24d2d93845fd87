import { asyncScheduler, Observable, type SchedulerLike, type Subscription } from 'rxjs';

export type PeerStatus = 'peer.silent' | 'peer.heard';

/**
 * Failure detection (DESIGN §3): 'peer.silent' once nothing arrived on `activity$` for
 * `timeoutMs` (counted from subscription, then from the latest arrival), 'peer.heard' on the
 * first arrival after that. Suspicion only: deciding what to do is the caller's job. When
 * `activity$` completes, the silence still gets reported, then the watchdog completes.
 */
export const watchdog$ = (
  activity$: Observable<unknown>,
  timeoutMs: number,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<PeerStatus> =>
  new Observable<PeerStatus>((sub) => {
    let silent = false;
    let ended = false;
    let last = scheduler.now();
    // NOTE one timer per silence period, not one per arrival: an arrival only notes its time,
    // and the timer, when it fires, waits again for what is left (acks come once per batch).
    let timer: Subscription | undefined;
    const arm = (delayMs: number): void => {
      timer = scheduler.schedule(check, delayMs);
    };
    const check = (): void => {
      timer = undefined;
      const quietMs = scheduler.now() - last;
      if (quietMs < timeoutMs) {
        arm(timeoutMs - quietMs);
        return;
      }
      silent = true;
      sub.next('peer.silent');
      if (ended) sub.complete();
    };
    arm(timeoutMs);
    const source = activity$.subscribe({
      next: () => {
        last = scheduler.now();
        if (silent) {
          silent = false;
          sub.next('peer.heard');
        }
        if (!timer) arm(timeoutMs);
      },
      error: (err: unknown) => sub.error(err),
      complete: () => {
        ended = true;
        if (silent) sub.complete();
      },
    });
    return () => {
      source.unsubscribe();
      timer?.unsubscribe();
    };
  });
