import { asyncScheduler, Subscription, type Observable } from 'rxjs';
import { threadStallMeter, watchdog$, type StallClock } from '../channel/watchdog.js';
import type { PeerBeats } from '../channel/heartbeat-shared.js';

export type SuspicionEvent = { type: 'peer.silent' } | { type: 'peer.heard' } | { type: 'suspect.expired' };

/**
 * Failure detection for one side of the pair (DESIGN §3): the watchdog reports silence, and a
 * silence that lasts `confirmMs` longer becomes `suspect.expired`, the only thing that lets a
 * node ask the arbiter. Suspicion alone never makes a second primary.
 */
/**
 * Where the activity is the primary's log (a backup watching its primary), a stream that ends
 * before the end record has failed: the peer's socket was reset (kill -9 on the same host)
 * or the channel broke. Suspicion then starts at once (the charts do not wait for its
 * confirmation: the channel's own `channel.failed` reaches them as a verdict). Acks (numbers)
 * carry no end record: their end waits the timeout as before.
 */
const cleanEnd = (v: unknown): boolean => typeof v !== 'object' || v === null || (v as { type?: unknown }).type === 'end';

export function watchPeer(
  activity$: Observable<unknown>,
  suspectMs: number,
  confirmMs: number,
  send: (e: SuspicionEvent) => void,
  /** Above suspectMs: the suspicion timeout grows with the gaps the host shows, up to this (watchdog$). */
  suspectMaxMs = suspectMs,
  /** This thread's stalls (default: the thread's StallMeter when the timeout adapts; tests pass their own). */
  stallClock?: StallClock,
  /** The peer's heartbeats (runtime/channel/heartbeat.ts), where a link carries them. */
  beats?: PeerBeats,
): Subscription {
  let confirm: NodeJS.Timeout | undefined;
  // Across processes (a timeout that adapts to the host), this thread's own stalls are left
  // out of the silence (runtime/channel/watchdog.ts, StallMeter); in one thread, with a fixed
  // timeout, both sides share the thread and its stalls.
  const own = stallClock ?? (suspectMaxMs > suspectMs ? threadStallMeter() : undefined);
  // NOTE: the watchdog completes right after reporting the silence of a stream that ended
  // (a cut channel): the confirmation must outlive it, so only our own unsubscribe cancels it.
  let streamEnded = false;
  const watch = watchdog$(activity$, suspectMs, asyncScheduler, suspectMaxMs, cleanEnd, own, beats).subscribe({ complete: () => { streamEnded = true; }, next: (status) => {
    if (status === 'peer.silent') {
      send({ type: 'peer.silent' });
      const silentAt = performance.now();
      // The confirmation too waits confirmMs of time this thread could run: a thread stalled
      // meanwhile waits the stall again, so the peer gets the time to be heard.
      let counted = own?.stalledMs() ?? 0;
      const wait = (ms: number): void => {
        confirm = setTimeout(() => {
          const stalled = own ? own.stalledMs() - counted : 0;
          if (stalled >= 1) {
            counted += stalled;
            wait(stalled);
            return;
          }
          // As the watchdog does: one more event-loop turn, so bytes queued while this thread
          // stalled are read (and clear the suspicion) before it counts as confirmed.
          confirm = setTimeout(() => {
            // A beat since the silence began: the watchdog's next look says 'peer.heard'.
            // (A channel that broke stays broken, beats or not: that suspicion stands.)
            if (beats && !streamEnded && beats.sinceHeardMs() < performance.now() - silentAt) {
              wait(confirmMs);
              return;
            }
            send({ type: 'suspect.expired' });
          }, 0);
        }, ms);
      };
      wait(confirmMs);
    } else {
      clearTimeout(confirm);
      send({ type: 'peer.heard' });
    }
  } });
  return new Subscription(() => {
    watch.unsubscribe();
    clearTimeout(confirm);
  });
}
