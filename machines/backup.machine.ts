// The backup's side of the FT protocol (DESIGN §3): be admitted to the pair, replay in
// lockstep, suspect a silent primary, claim the arbiter, replay what is left, then go live.
// The replay loop, the channel and the arbiter live in the runtime, reached through the named
// effects below. Membership is decided here: only an admitted backup that holds a synced
// state (the log from instruction 0, or a restored snapshot) may ever claim the arbiter.
import { assign, setup } from 'xstate';
import { arbiterClientMachine, DEFAULT_CLAIM_RETRY, type ArbiterClientOutput, type ClaimRetry } from './arbiter-client.machine.js';

export interface BackupContext {
  /** The arbiter key (pair generation) this backup claims if its primary goes silent. */
  generation: number;
  /** The primary admitted this backup to its pair: same instance, image and memory size. */
  admitted: boolean;
  /** This replica's state is the primary's: it replays from instruction 0 or from a restored snapshot. */
  synced: boolean;
  /** The arbiter client's backoff while the arbiter is unreachable (its delays). */
  claimRetry: ClaimRetry;
}

export interface BackupInput {
  generation?: number;
  claimRetry?: Partial<ClaimRetry>;
}

export type BackupEvent =
  | { type: 'backup.start' }
  /** The primary's hello admitted this backup; `joining`: a snapshot comes first. */
  | { type: 'primary.admitted'; joining: boolean; generation: number }
  /** Turned away: busy, another pair instance, image or memory size, or a wrong key. */
  | { type: 'primary.refused' }
  | { type: 'snapshot.loaded' }
  /** A batch of log entries arrived (one event per arrival batch, never one per entry). */
  | { type: 'channel.entries' }
  /** While acks wait for the replay (it lags): the replay reached further entries. */
  | { type: 'replay.advanced' }
  | { type: 'channel.failed' }
  | { type: 'peer.silent' }
  | { type: 'peer.heard' }
  | { type: 'suspect.expired' }
  | { type: 'replay.drained' }
  | { type: 'primary.ended' }
  | { type: 'digest.mismatch' };

/**
 * A broken channel (reset, closed before the primary's `end`, a frame that does not decode) is
 * not a silence that may end: the channel never reconnects, so the primary's log can never
 * reach this backup again, and waiting for a confirmation only delays the failover (on a
 * loaded host by seconds: the confirmation counts only time this thread could run). It is a
 * verdict at once; the arbiter still decides who goes live (DESIGN §3 Split brain), and a
 * replica that is not a member gives up as after a confirmed silence.
 */
const BROKEN_CHANNEL = [{ guard: 'isMember', target: 'claiming' }, { target: 'abandoned' }] as const;

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const backupMachine = setup({
  types: {
    context: {} as BackupContext,
    events: {} as BackupEvent,
    input: {} as BackupInput | undefined,
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
    /** The arbiter was lost: the primary lives on, so this replica stops for good. */
    haltVm: unwired('haltVm'),
    /** Stop taking entries and replay every entry already received (DESIGN §3 Go-live). */
    drainLog: unwired('drainLog'),
    /** Swap the environment from replay to live, re-issue pending outputs, run as primary. */
    goLive: unwired('goLive'),
    reportDivergence: unwired('reportDivergence'),
  },
  actors: {
    /** Claims `context.generation` until the arbiter answers (DESIGN §3 Split brain). */
    arbiterClient: arbiterClientMachine,
  },
  guards: {
    /** The arbiter client's verdict; anything but an explicit win halts (never two primaries). */
    claimWon: ({ event }) => (event as { output?: ArbiterClientOutput }).output?.result === 'won',
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
  context: ({ input }) => ({
    generation: input?.generation ?? 0,
    admitted: false,
    synced: false,
    claimRetry: { ...DEFAULT_CLAIM_RETRY, ...input?.claimRetry },
  }),
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
        'replay.advanced': { actions: 'sendAck' },
        'channel.failed': BROKEN_CHANNEL,
        'peer.silent': { target: 'suspecting' },
      },
    },
    replaying: {
      on: {
        'channel.entries': { actions: ['applyEntries', 'sendAck'] },
        'replay.advanced': { actions: 'sendAck' },
        'peer.silent': { target: 'suspecting' },
        'channel.failed': BROKEN_CHANNEL,
        'primary.ended': { target: 'finished' },
        'digest.mismatch': { target: 'diverged' },
      },
    },
    // Suspicion alone never makes a second primary (DESIGN §3 Failure detection).
    suspecting: {
      on: {
        'channel.entries': { actions: ['applyEntries', 'sendAck'] },
        'replay.advanced': { actions: 'sendAck' },
        'snapshot.loaded': { actions: assign({ synced: true }) },
        'peer.heard': [{ guard: 'isSynced', target: 'replaying' }, { target: 'receivingSnapshot' }],
        'suspect.expired': [{ guard: 'isMember', target: 'claiming' }, { target: 'abandoned' }],
        'channel.failed': BROKEN_CHANNEL,
        'primary.ended': { target: 'finished' },
        'digest.mismatch': { target: 'diverged' },
      },
    },
    // Whoever goes live must first win the test-and-set. The arbiter client keeps trying an
    // unreachable arbiter (its own backoff) for the generation the primary admitted us to.
    claiming: {
      invoke: {
        id: 'arbiter',
        src: 'arbiterClient',
        input: ({ context }) => ({ generation: context.generation, retry: context.claimRetry }),
        onDone: [
          { guard: 'claimWon', target: 'goingLive' },
          { target: 'halted', actions: 'haltVm' },
        ],
      },
      on: {
        // Until the claim is decided the primary may still be logging; what is acked now
        // is replayed by the drain if this side wins.
        'channel.entries': { actions: ['applyEntries', 'sendAck'] },
        'replay.advanced': { actions: 'sendAck' },
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
