// CLINT machine timer (DESIGN §1–§2), one hart. MTIP is level: high while
// mtime >= mtimecmp. NOTE determinism: the chart never compares times itself — on the
// primary the live env decides when mtime reached mtimecmp (host time) and logs the
// icount; on the backup the log says so. Either way it arrives as `timer.fired`.
import { setup } from 'xstate';

export type TimerEvent =
  /**
   * The guest wrote mtimecmp. `far`: the new compare is so far ahead that it can never be
   * reached in practice (guests write all-ones to disarm), so no deadline is watched.
   */
  | { type: 'timer.compareWritten'; far: boolean }
  /** The env decided mtime has reached mtimecmp, at this exact icount. */
  | { type: 'timer.fired' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const timerMachine = setup({
  types: { context: {} as Record<string, never>, events: {} as TimerEvent },
  actions: {
    /** Let the live env watch the new deadline (replay ignores it: the log decides). */
    armDeadline: unwired('armDeadline'),
    /** Set mip.MTIP. */
    raiseMtip: unwired('raiseMtip'),
    /** Clear mip.MTIP: a new compare value is in the future again. */
    lowerMtip: unwired('lowerMtip'),
  },
  guards: {
    isFar: ({ event }) => event.type === 'timer.compareWritten' && event.far,
  },
}).createMachine({
  id: 'timer',
  initial: 'disarmed',
  context: {},
  on: {
    // Any write to mtimecmp moves the deadline (devices/clint.ts: it lowers MTIP and ends
    // the batch); if it is already due, the env fires again at once.
    'timer.compareWritten': [
      { guard: 'isFar', target: '.disarmed' },
      { target: '.armed', reenter: true },
    ],
  },
  states: {
    disarmed: {},
    armed: {
      entry: 'armDeadline',
      on: { 'timer.fired': { target: 'pending' } },
    },
    pending: {
      entry: 'raiseMtip',
      exit: 'lowerMtip',
    },
  },
});
