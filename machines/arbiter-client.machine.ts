// Client of the arbiter's atomic test-and-set (DESIGN §3 Split brain). One claim per
// pair generation: whoever wins it may go live; the loser halts. A client that cannot
// reach the arbiter keeps trying (the runtime's retry timer sends `arbiter.retry`).
import { assign, setup } from 'xstate';

export interface ArbiterClientContext {
  /** The generation being claimed: the arbiter key (etcd key, file name, map entry). */
  generation: number;
}

export type ArbiterClientEvent =
  | { type: 'arbiter.claim'; generation: number }
  | { type: 'arbiter.won' }
  | { type: 'arbiter.lost' }
  | { type: 'arbiter.unreachable' }
  | { type: 'arbiter.retry' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const arbiterClientMachine = setup({
  types: { context: {} as ArbiterClientContext, events: {} as ArbiterClientEvent },
  actions: {
    /** Send one test-and-set for `context.generation`; answers won, lost or unreachable. */
    testAndSet: unwired('testAndSet'),
    /** Start the retry timer (outside the chart); it answers `arbiter.retry`. */
    scheduleRetry: unwired('scheduleRetry'),
  },
}).createMachine({
  id: 'arbiterClient',
  initial: 'idle',
  context: { generation: 0 },
  states: {
    idle: {
      on: {
        'arbiter.claim': {
          target: 'claiming',
          actions: assign({ generation: ({ event }) => event.generation }),
        },
      },
    },
    claiming: {
      entry: 'testAndSet',
      on: {
        'arbiter.won': { target: 'won' },
        'arbiter.lost': { target: 'lost' },
        'arbiter.unreachable': { target: 'unreachable' },
      },
    },
    // NOTE: an unanswered claim may still have been applied by the arbiter; retrying
    // the same generation is safe because test-and-set on one key is idempotent for
    // the same claimant (the arbiter answers "won" again to its owner).
    unreachable: {
      entry: 'scheduleRetry',
      on: { 'arbiter.retry': { target: 'claiming' } },
    },
    won: { type: 'final' },
    lost: { type: 'final' },
  },
});
