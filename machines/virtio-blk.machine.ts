// virtio-blk's request lifecycle and its disk backend (VIRTIO 1.1 §5.2, DESIGN §2–§3), the
// chart devices/virtio-blk.ts runs. The device parses each request (plain TypeScript: header,
// range checks, byte copies); a request that needs the disk enters this chart, which decides
// what happens to it: a read is issued to the backend only while one is attached (a replaying
// backup or `ftvm replay` waits for the log's answer instead), a write or flush always leaves
// as an output (the node's output rule decides when it reaches the disk), a completion writes
// the status byte and returns the chain, a device reset forgets every request, and attaching
// the backend at go-live re-issues every request still waiting (DESIGN §3 go-live).
//
// NOTE events carry no request: effects act on the request the device has at hand (the one
// just submitted or just completed), so the device can memoize each step (devices/chart.ts).
import { and, setup, stateIn } from 'xstate';

export type BlkRequestKind = 'read' | 'write' | 'flush';

export type VirtioBlkEvent =
  /** The driver made a request available that needs the disk; it is now waiting for its completion. */
  | { type: 'blk.submitted'; kind: BlkRequestKind }
  /** A waiting request's completion took effect (from the backend, or from the log); `last`: none waits now. */
  | { type: 'blk.completed'; last: boolean }
  /** The transport reset the device (status 0, or DEVICE_NEEDS_RESET). */
  | { type: 'blk.reset' }
  /** The host connected the disk backend: at boot on a primary, at go-live on a backup. */
  | { type: 'blk.backendAttached' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const virtioBlkMachine = setup({
  types: { context: {} as Record<string, never>, events: {} as VirtioBlkEvent },
  actions: {
    /** Hand the read just submitted to the disk backend; its data and status return as logged inputs. */
    issueRead: unwired('issueRead'),
    /** Emit the write or flush just submitted as an output (released under the output rule). */
    emitOutput: unwired('emitOutput'),
    /** Write the completed request's status byte, return its chain in the used ring, interrupt. */
    finishRequest: unwired('finishRequest'),
    /** Drop every waiting request: completions that still come for them are ignored. */
    forgetRequests: unwired('forgetRequests'),
    /** Issue every waiting request again on the backend just attached (reads re-read, writes and flushes repeat). */
    reissuePending: unwired('reissuePending'),
  },
  guards: {
    isRead: ({ event }) => event.type === 'blk.submitted' && event.kind === 'read',
    isLast: ({ event }) => event.type === 'blk.completed' && event.last,
    hasBackend: stateIn('#virtioBlk.backend.attached'),
  },
}).createMachine({
  id: 'virtioBlk',
  type: 'parallel',
  context: {},
  states: {
    requests: {
      initial: 'idle',
      states: {
        idle: {
          on: {
            'blk.submitted': [
              { guard: and(['isRead', 'hasBackend']), target: 'waiting', actions: 'issueRead' },
              // Without a backend the log brings the read's answer: nothing to issue.
              { guard: 'isRead', target: 'waiting' },
              { target: 'waiting', actions: 'emitOutput' },
            ],
          },
        },
        // At least one request has no completion yet.
        waiting: {
          on: {
            'blk.submitted': [
              { guard: and(['isRead', 'hasBackend']), actions: 'issueRead' },
              { guard: 'isRead' },
              { actions: 'emitOutput' },
            ],
            'blk.completed': [
              { guard: 'isLast', target: 'idle', actions: 'finishRequest' },
              { actions: 'finishRequest' },
            ],
            'blk.reset': { target: 'idle', actions: 'forgetRequests' },
          },
        },
      },
    },
    backend: {
      initial: 'deferred',
      states: {
        // No backend here (a replaying backup, `ftvm replay`): the log brings every answer.
        deferred: {
          on: {
            'blk.backendAttached': { target: 'attached', actions: 'reissuePending' },
          },
        },
        attached: {},
      },
    },
  },
});
