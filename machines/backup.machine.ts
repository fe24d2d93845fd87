// The backup's side of the FT protocol (DESIGN §3): replay in lockstep, suspect a silent
// primary, claim the arbiter, replay what is left, then go live. The replay loop, the channel
// and the arbiter live in the runtime, reached through the named effects below.
import { assign, setup } from 'xstate';

export interface BackupContext {
  /** The arbiter key (pair generation) this backup claims if its primary goes silent. */
  generation: number;
}

export type BackupEvent =
  | { type: 'backup.start'; fromSnapshot: boolean }
  | { type: 'snapshot.loaded' }
  /** Entries arrived from the primary. The runtime may instead ack on receipt itself. */
  | { type: 'channel.entries' }
  | { type: 'channel.failed' }
  | { type: 'peer.silent' }
  | { type: 'peer.heard' }
  | { type: 'suspect.expired' }
  | { type: 'arbiter.won' }
  | { type: 'arbiter.lost' }
  | { type: 'arbiter.unreachable' }
  | { type: 'replay.drained' }
  | { type: 'primary.ended' }
  | { type: 'digest.mismatch' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const backupMachine = setup({
  types: {
    context: {} as BackupContext,
    events: {} as BackupEvent,
    input: {} as { generation?: number } | undefined,
  },
  actions: {
    /** Hand received entries to the replay env; the CPU may run up to the newest icount. */
    applyEntries: unwired('applyEntries'),
    /**
     * Acknowledge received entries: what lets the primary release outputs. Acking on
     * receipt is enough (VMware FT): an entry received is replayed before any go-live.
     */
    sendAck: unwired('sendAck'),
    /** Test-and-set on the arbiter for `context.generation` (DESIGN §3 Split brain). */
    claimArbiter: unwired('claimArbiter'),
    retryClaim: unwired('retryClaim'),
    /** The arbiter was lost: the primary lives on, so this replica stops for good. */
    haltVm: unwired('haltVm'),
    /** Stop taking entries and replay every entry already received (DESIGN §3 Go-live). */
    drainLog: unwired('drainLog'),
    /** Swap the environment from replay to live, re-issue pending outputs, run as primary. */
    goLive: unwired('goLive'),
    reportDivergence: unwired('reportDivergence'),
  },
  guards: {
    isJoining: ({ event }) => event.type === 'backup.start' && event.fromSnapshot,
  },
}).createMachine({
  id: 'backup',
  initial: 'idle',
  context: ({ input }) => ({ generation: input?.generation ?? 0 }),
  states: {
    idle: {
      on: {
        'backup.start': [{ guard: 'isJoining', target: 'receivingSnapshot' }, { target: 'replaying' }],
      },
    },
    // Re-protection: the primary streams a snapshot; replay starts at its icount. Without a
    // whole snapshot there is no VM to take over with, so a join that breaks here is
    // abandoned (no claim, no VM to halt); the primary then claims alone.
    receivingSnapshot: {
      on: {
        'snapshot.loaded': { target: 'replaying' },
        'channel.failed': { target: 'abandoned' },
        'peer.silent': { target: 'abandoned' },
      },
    },
    replaying: {
      on: {
        'channel.entries': { actions: ['applyEntries', 'sendAck'] },
        'peer.silent': { target: 'suspecting' },
        // A broken stream is silence too: suspicion, not yet a verdict.
        'channel.failed': { target: 'suspecting' },
        'primary.ended': { target: 'finished' },
        'digest.mismatch': { target: 'diverged' },
      },
    },
    // Suspicion alone never makes a second primary (DESIGN §3 Failure detection).
    suspecting: {
      on: {
        'channel.entries': { actions: ['applyEntries', 'sendAck'] },
        'peer.heard': { target: 'replaying' },
        'suspect.expired': { target: 'claiming' },
        'primary.ended': { target: 'finished' },
        'digest.mismatch': { target: 'diverged' },
      },
    },
    // Whoever goes live must first win the test-and-set; unreachable means keep trying.
    claiming: {
      entry: 'claimArbiter',
      on: {
        // Until the claim is decided the primary may still be logging; what is acked now
        // is replayed by the drain if this side wins.
        'channel.entries': { actions: ['applyEntries', 'sendAck'] },
        'arbiter.unreachable': { actions: 'retryClaim' },
        'arbiter.won': { target: 'goingLive' },
        'arbiter.lost': { target: 'halted', actions: 'haltVm' },
        'primary.ended': { target: 'finished' },
        'digest.mismatch': { target: 'diverged' },
      },
    },
    // WARNING: no `channel.entries` from here on. Once the arbiter is won, an entry from
    // the old primary is neither replayed nor acked: an ack would let it release an
    // output this execution never produces (DESIGN §3 Output rule).
    goingLive: {
      entry: 'drainLog',
      on: {
        'replay.drained': {
          target: 'live',
          actions: [assign({ generation: ({ context }) => context.generation + 1 }), 'goLive'],
        },
        'digest.mismatch': { target: 'diverged' },
      },
    },
    // This chart ends here; the runtime runs a primary chart for the new primary, at the
    // next generation (the one this side won is spent).
    live: { type: 'final' },
    halted: { type: 'final' },
    finished: { type: 'final' },
    abandoned: { type: 'final' },
    // A diverged backup must never go live; the runtime rebuilds it (DESIGN §3 Divergence).
    diverged: { type: 'final', entry: 'reportDivergence' },
  },
});
