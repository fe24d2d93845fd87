// The watchdog with a heartbeat link's beats (runtime/channel/heartbeat.ts): a beat is hearing
// the peer as much as a log arrival is, and while beats come the adaptive timeout follows
// their gaps, not the log's. Virtual time: the beats here are stamped on the test scheduler.
import { describe, expect, it } from 'vitest';
import { TestScheduler } from 'rxjs/testing';
import type { SchedulerLike } from 'rxjs';
import { BEAT_POLL_MS, GAP_FACTOR, watchdog$ } from '../runtime/channel/watchdog.js';
import type { PeerBeats } from '../runtime/channel/heartbeat-shared.js';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
const values = { s: 'peer.silent', h: 'peer.heard' } as const;

/** Beats at the given virtual times (ms), as a link thread would have stamped them. */
function beatsAt(s: SchedulerLike, times: number[]): PeerBeats {
  const heard = (): number[] => times.filter((t) => t <= s.now());
  return {
    sinceHeardMs: () => {
      const h = heard();
      return h.length ? s.now() - h[h.length - 1]! : Infinity;
    },
    gapPeakMs: () => {
      const h = heard();
      let peak = 0;
      for (let i = 1; i < h.length; i++) peak = Math.max(peak, h[i]! - h[i - 1]!);
      return peak;
    },
  };
}

const every = (ms: number, from: number, to: number): number[] => Array.from({ length: Math.floor((to - from) / ms) + 1 }, (_, i) => from + i * ms);

describe('watchdog$ with the peer\'s heartbeats', () => {
  it('a log that goes quiet is not silence while beats come; silence once they stop too', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      // One log arrival, then nothing; beats every 5 ms until 200 ms.
      const beats = beatsAt(ts, every(5, 0, 200));
      expectObservable(watchdog$(cold('a'), 50, ts, 0, undefined, undefined, beats), '^ 400ms !').toBe('250ms s', values);
    });
  });

  it('without beats the same log is silent after the timeout (the control)', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('a'), 50, ts), '^ 400ms !').toBe('50ms s', values);
    });
  });

  it('a beat ends a silence without any log arrival', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      // Beats until 20 ms, none until 120 ms, then again: silent at 70, heard at the first
      // poll after the beat at 120 (polls every BEAT_POLL_MS from 70), silent again after the last.
      const beats = beatsAt(ts, [...every(5, 0, 20), ...every(5, 120, 140)]);
      const heardAt = 70 + Math.ceil((120 - 70) / BEAT_POLL_MS) * BEAT_POLL_MS;
      expectObservable(watchdog$(cold('a'), 50, ts, 0, undefined, undefined, beats), '^ 400ms !')
        .toBe(`70ms s ${heardAt - 70 - 1}ms h ${140 + 50 - heardAt - 1}ms s`, values);
    });
  });

  it('beats never shorten the adaptive timeout: the log\'s long gaps still set it, and the beats\' own gaps widen it', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      // A log with 200 ms gaps: after the first window (2 s at the 1 s ceiling) the timeout is
      // 4 x 200 = 800 ms; beats every 5 ms until 3000 ms, then nothing: silent 800 ms after the
      // last beat, not 100 ms.
      const beats = beatsAt(ts, every(5, 0, 3000));
      const log = cold('a 199ms b 199ms c 199ms d 199ms e 199ms f 199ms g 199ms h 199ms i 199ms j 199ms k 199ms l 199ms m');
      expectObservable(watchdog$(log, 100, ts, 1000, undefined, undefined, beats), '^ 5000ms !').toBe('3800ms s', values);
    });
    const ts2 = scheduler();
    ts2.run(({ cold, expectObservable }) => {
      // A log arrival every 5 ms until 3000 ms (calm), beats with one 60 ms gap at 2000 ms:
      // the timeout is GAP_FACTOR x 60 ms, and the silence is counted from the later of the two.
      const log = cold(`${Array.from({ length: 600 }, () => 'a 4ms').join(' ')} a`);
      const beats = beatsAt(ts2, [...every(5, 0, 2000), ...every(5, 2060, 3100)]);
      expectObservable(watchdog$(log, 100, ts2, 1000, undefined, undefined, beats), '^ 5000ms !').toBe(`${3100 + GAP_FACTOR * 60}ms s`, values);
    });
  });

  it('a log stream that breaks is reported at once, beats or not', () => {
    const ts = scheduler();
    ts.run(({ cold, expectObservable }) => {
      const beats = beatsAt(ts, every(5, 0, 400));
      const isEnd = (v: unknown): boolean => v === 'end';
      expectObservable(watchdog$(cold('a 9ms |'), 50, ts, 0, isEnd, undefined, beats), '^ 400ms !').toBe('10ms (s|)', values);
    });
  });
});
