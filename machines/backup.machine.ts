// The backup's side of the FT protocol (DESIGN §3): be admitted to the pair, replay in
// lockstep, suspect a silent primary, claim the arbiter, replay what is left, then go live.
// The replay loop, the channel and the arbiter live in the runtime, reached through the named
// effects below. Membership is decided here: only an admitted backup that holds a synced
// state (the log from instruction 0, or a restored snapshot) may ever claim the arbiter.
import { assign, setup } from 'xstate';

export interface BackupContext {
  /** The arbiter key (pair generation) this backup claims if its primary goes silent. */
  generation: number;
  /** The primary admitted this backup to its pair: same instance, image and memory size. */
  admitted: boolean;
  /** This replica's state is the primary's: it replays from instruction 0 or from a restored snapshot. */
  synced: boolean;
}

export type BackupEvent =
  | { type: 'backup.start' }
  /** The primary's hello admitted this backup; `joining`: a snapshot comes first. */
  | { type: 'primary.admitted'; joining: boolean; generation: number }
  /** Turned away: busy, another pair instance, image or memory size, or a wrong key. */
  | { type: 'primary.refused' }
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
    /** Say why the primary turned this backup away; the runtime exits without running the guest. */
    reportRefusal: unwired('reportRefusal'),
    /** Start watching the primary's log for silence (only an admitted backup has a primary). */
    watchPrimary: unwired('watchPrimary'),
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
    isJoining: ({ event }) => event.type === 'primary.admitted' && event.joining,
    /**
     * DESIGN §3 Membership: the only question asked on every road into `claiming`. A replica
     * the primary never admitted (an extra backup turned away as busy, another image) or one
     * without the primary's state (a join whose snapshot never arrived) has nothing to take
     * over with: it must never win a generation, whatever it suspects.
     */
    isMember: ({ context }) => context.admitted && context.synced,
    isSynced: ({ context }) => context.synced,
  },
}).createMachine({
  id: 'backup',
  initial: 'idle',
  context: ({ input }) => ({ generation: input?.generation ?? 0, admitted: false, synced: false }),
  states: {
    idle: {
      on: { 'backup.start': { target: 'handshaking' } },
    },
    // Asked the primary to join its pair; nothing runs until it answers.
    handshaking: {
      on: {
        'primary.admitted': [
          {
            guard: 'isJoining',
            target: 'receivingSnapshot',
            actions: [assign({ admitted: true, generation: ({ event }) => event.generation }), 'watchPrimary'],
          },
          {
            // Booted from the same image as the primary: in sync from instruction 0.
            target: 'replaying',
            actions: [assign({ admitted: true, synced: true, generation: ({ event }) => event.generation }), 'watchPrimary'],
          },
        ],
        'primary.refused': { target: 'refused' },
        // No primary answered (unreachable, gone mid-handshake): nothing to protect.
        'channel.failed': { target: 'unattached' },
      },
    },
    // Re-protection: the primary streams a snapshot; replay starts at its icount. Without a
    // whole snapshot there is no VM to take over with: a primary that goes silent now is
    // suspected like any other, but the claim is refused by `isMember` and the join is
    // abandoned (no claim, no VM to halt); the primary then claims alone.
    receivingSnapshot: {
      on: {
        'snapshot.loaded': { target: 'replaying', actions: assign({ synced: true }) },
        'channel.entries': { actions: ['applyEntries', 'sendAck'] },
        'channel.failed': { target: 'suspecting' },
        'peer.silent': { target: 'suspecting' },
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
        'snapshot.loaded': { actions: assign({ synced: true }) },
        'peer.heard': [{ guard: 'isSynced', target: 'replaying' }, { target: 'receivingSnapshot' }],
        'suspect.expired': [{ guard: 'isMember', target: 'claiming' }, { target: 'abandoned' }],
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
    // Not a member of this pair: it says why and ends; it never ran the guest.
    refused: { type: 'final', entry: 'reportRefusal' },
    unattached: { type: 'final' },
    // A diverged backup must never go live; the runtime rebuilds it (DESIGN §3 Divergence).
    diverged: { type: 'final', entry: 'reportDivergence' },
  },
});
