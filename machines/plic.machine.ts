// One PLIC interrupt source through its gateway (RISC-V PLIC spec; QEMU virt). The
// register file (priorities, enables, threshold) lives in devices/plic.ts; this chart is
// the per-source life cycle, level-triggered as the UART and virtio lines are.
import { assign, setup } from 'xstate';

export interface PlicContext {
  /** The device's interrupt line level, which decides what completion leads to. */
  lineHigh: boolean;
}

export type PlicEvent =
  | { type: 'plic.raised' }
  | { type: 'plic.lowered' }
  /** The hart read the claim register and got this source. */
  | { type: 'plic.claimed' }
  /** The hart wrote this source's id back to the claim/complete register. */
  | { type: 'plic.completed' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const plicMachine = setup({
  types: { context: {} as PlicContext, events: {} as PlicEvent },
  actions: {
    /** Recompute mip.MEIP from pending, enabled sources above the threshold. */
    updateMeip: unwired('updateMeip'),
  },
  guards: {
    isLineHigh: ({ context }) => context.lineHigh,
  },
}).createMachine({
  id: 'plic',
  initial: 'idle',
  context: { lineHigh: false },
  on: {
    'plic.raised': { actions: assign({ lineHigh: true }) },
    'plic.lowered': { actions: assign({ lineHigh: false }) },
  },
  states: {
    idle: {
      on: { 'plic.raised': { target: 'pending', actions: assign({ lineHigh: true }) } },
    },
    pending: {
      entry: 'updateMeip',
      exit: 'updateMeip',
      on: {
        'plic.claimed': { target: 'claimed' },
        // Level-triggered: a lowered line withdraws a request nobody has claimed yet.
        'plic.lowered': { target: 'idle', actions: assign({ lineHigh: false }) },
      },
    },
    // The gateway forwards no new request from this source until completion.
    claimed: {
      on: {
        'plic.completed': [{ guard: 'isLineHigh', target: 'pending' }, { target: 'idle' }],
      },
    },
  },
});
