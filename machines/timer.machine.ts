// CLINT machine timer (DESIGN §1–§2), one hart: the chart devices/clint.ts runs. MTIP is
// level: high exactly while the chart is `pending`, and the device reports it from here
// (`Clint.timerPending`, the mip.MTIP line, the snapshot). NOTE determinism: the chart never
// compares times itself — on the primary the live env decides when mtime reached mtimecmp
// (host time) and logs the icount; on the backup the log says so. Either way it arrives as
// `timer.fired`. The device sends an event only when the state would change, so a guest that
// rewrites an armed compare costs no event.
import { setup } from 'xstate';

export type TimerEvent =
  /**
   * The guest wrote mtimecmp. `far`: the new compare is so far ahead (≥ 2^53 ticks) that it
   * can never be reached (guests write all-ones to disarm), so no deadline is watched.
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
  // mtimecmp resets to all ones (QEMU virt): nothing is armed.
  initial: 'disarmed',
  context: {},
  on: {
    // Any write to mtimecmp moves the deadline; if the new one is already due, the env
    // fires again at once (the write also ends the batch, in devices/clint.ts).
    'timer.compareWritten': [
      { guard: 'isFar', target: '.disarmed' },
      { target: '.armed' },
    ],
  },
  states: {
    disarmed: {},
    // The env watches mtime against mtimecmp only here.
    armed: {
      on: { 'timer.fired': { target: 'pending' } },
    },
    pending: {
      entry: 'raiseMtip',
      exit: 'lowerMtip',
    },
  },
});
