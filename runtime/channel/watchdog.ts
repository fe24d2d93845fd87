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
    let timer: Subscription | undefined;
    const arm = (): void => {
      timer?.unsubscribe();
      timer = scheduler.schedule(() => {
        silent = true;
        sub.next('peer.silent');
        if (ended) sub.complete();
      }, timeoutMs);
    };
    arm();
    const source = activity$.subscribe({
      next: () => {
        if (silent) {
          silent = false;
          sub.next('peer.heard');
        }
        arm();
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
