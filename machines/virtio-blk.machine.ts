// One virtio-blk request under FT (DESIGN §2–§3). A disk completion is a logged input: on
// the primary it comes from the backend, on the backup only from the log. A disk write is
// an output: held until the backup acked its icount. At go-live the new primary re-issues
// every request whose completion it never saw (duplicates are harmless; loss is not).
import { setup } from 'xstate';

export interface VirtioBlkInput {
  /** record: the primary (or a VM without FT, which releases at once); replay: the backup. */
  mode: 'record' | 'replay';
}

export type VirtioBlkEvent =
  /** The driver queued the request and notified the device. */
  | { type: 'blk.submitted'; write: boolean }
  /** The output rule cleared this write: the backup acked every entry up to its icount. */
  | { type: 'blk.released' }
  /** The completion took effect at its icount (from the backend, logged; or from the log). */
  | { type: 'blk.completed' }
  /** The backup went live with this request still pending. */
  | { type: 'blk.wentLive' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const virtioBlkMachine = setup({
  types: { context: {} as VirtioBlkInput, events: {} as VirtioBlkEvent, input: {} as VirtioBlkInput },
  actions: {
    /** Send the request to the disk backend (file or NBD). */
    issueIo: unwired('issueIo'),
  },
  guards: {
    isReplaying: ({ context }) => context.mode === 'replay',
    isWrite: ({ event }) => event.type === 'blk.submitted' && event.write,
  },
}).createMachine({
  id: 'virtioBlk',
  initial: 'submitting',
  context: ({ input }) => ({ mode: input.mode }),
  states: {
    submitting: {
      on: {
        'blk.submitted': [
          // The backup's replayed guest makes the same request; the disk is shared and
          // the primary does the I/O, so the backup only waits for the logged completion.
          { guard: 'isReplaying', target: 'awaitingLog' },
          { guard: 'isWrite', target: 'held' },
          { target: 'issued', actions: 'issueIo' },
        ],
      },
    },
    held: {
      on: { 'blk.released': { target: 'issued', actions: 'issueIo' } },
    },
    issued: {
      on: { 'blk.completed': { target: 'completed' } },
    },
    awaitingLog: {
      on: {
        'blk.completed': { target: 'completed' },
        // DESIGN §3 Go-live: the old primary may or may not have done it; do it again.
        'blk.wentLive': { target: 'issued', actions: 'issueIo' },
      },
    },
    completed: { type: 'final' },
  },
});
