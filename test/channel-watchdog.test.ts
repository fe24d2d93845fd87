import { describe, expect, it } from 'vitest';
import { TestScheduler } from 'rxjs/testing';
import { watchdog$ } from '../runtime/channel/watchdog.js';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
const values = { s: 'peer.silent', h: 'peer.heard' } as const;

describe('watchdog$', () => {
  it('reports silence once, then hearing, counted from the latest arrival', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const activity = cold('-a--a-------a');
      expectObservable(watchdog$(activity, 5), '^ 20ms !').toBe('9ms s 2ms h 4ms s', values);
    });
  });

  it('reports silence only once however long it lasts', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-'), 5), '^ 40ms !').toBe('5ms s', values);
    });
  });

  it('stays quiet while traffic keeps arriving within the timeout', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-a-a-a-a-a-a-a-a'), 3), '^ 15ms !').toBe('', values);
    });
  });

  it('reports the silence after the activity completes, then completes', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-a|'), 5)).toBe('6ms (s|)', values);
    });
  });

  it('passes an activity error through', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(watchdog$(cold('-a#', undefined, new Error('boom')), 5)).toBe('--#', values, new Error('boom'));
    });
  });
});
