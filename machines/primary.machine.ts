// The primary's side of the FT protocol (DESIGN §3). It decides when outputs may leave
// the VM and when the primary may live without a backup; logging, the output buffer and
// the arbiter connection live in the runtime, reached through the named effects below.
import { assign, setup } from 'xstate';
import { arbiterClientMachine, DEFAULT_CLAIM_RETRY, type ArbiterClientOutput, type ClaimRetry } from './arbiter-client.machine.js';

export interface PrimaryContext {
  /**
   * The pair generation: the arbiter key this primary and its current backup would both
   * claim. Winning generation g moves the survivor to g + 1, so a backup that joins later
   * forms a pair under a key nobody has claimed, and an old backup can never win again.
   */
  generation: number;
  /**
   * Whether the current backup has caught up since it joined. Kept so that a suspicion
   * that clears returns to `protected` (with flow control) rather than to `protecting`,
   * which would wait for a second `backup.caughtUp` the runtime has no reason to send.
   */
  caughtUp: boolean;
  /** The arbiter client's backoff while the arbiter is unreachable (its delays). */
  claimRetry: ClaimRetry;
  /** The road this node starts on (see PrimaryStart); read once, by `starting`. */
  start: PrimaryStart;
}

/**
 * How the node begins (its chart's first road). There is no third: a primary never runs
 * without either a backup or a won claim (DESIGN §3 Split brain).
 * - `paired` (the default): booted together with its backup from one image, so that backup
 *   holds the same state from instruction 0 and the pair is protected from the start.
 * - `alone`: a backup that went live (it won `generation` as a backup). It claims again the
 *   key it won: test-and-set answers 'won' again to the same claimant, so `alone` is reached
 *   only by the arbiter's yes, and a replica whose claim is not on record halts instead.
 */
export type PrimaryStart = 'paired' | 'alone';

export interface PrimaryInput {
  generation: number;
  claimRetry?: Partial<ClaimRetry>;
  start?: PrimaryStart;
}

export type PrimaryEvent =
  | { type: 'backup.joined' }
  | { type: 'backup.caughtUp' }
  | { type: 'channel.acked' }
  | { type: 'channel.highWater' }
  | { type: 'channel.lowWater' }
  /**
   * The channel to the backup broke (reset, closed early, a frame that does not decode). It
   * never reconnects, so no ack can come again: a verdict, not a suspicion (the backup's chart
   * says the same of its side). The claim goes to the arbiter at once; only a silence waits
   * for a confirmation.
   */
  | { type: 'channel.failed' }
  | { type: 'peer.silent' }
  | { type: 'peer.heard' }
  | { type: 'suspect.expired' }
  | { type: 'vm.halted' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const primaryMachine = setup({
  types: {
    context: {} as PrimaryContext,
    events: {} as PrimaryEvent,
    input: {} as PrimaryInput,
  },
  actions: {
    /** Release the held outputs whose icount the backup has now acknowledged (output rule). */
    releaseOutputs: unwired('releaseOutputs'),
    /** Release every held output and send further outputs directly: the arbiter was won. */
    releaseAllOutputs: unwired('releaseAllOutputs'),
    /** Flow control: stop running batches until the backup catches up (DESIGN §3). */
    pauseVm: unwired('pauseVm'),
    resumeVm: unwired('resumeVm'),
    /** The arbiter was lost: another replica is live, so this VM must stop for good. */
    haltVm: unwired('haltVm'),
  },
  actors: {
    /** Claims `context.generation` until the arbiter answers (DESIGN §3 Split brain). */
    arbiterClient: arbiterClientMachine,
  },
  guards: {
    isCaughtUp: ({ context }) => context.caughtUp,
    startsAlone: ({ context }) => context.start === 'alone',
    /** The arbiter client's verdict; anything but an explicit win halts (never two primaries). */
    claimWon: ({ event }) => (event as { output?: ArbiterClientOutput }).output?.result === 'won',
  },
}).createMachine({
  id: 'primary',
  initial: 'starting',
  context: ({ input }) => ({
    generation: input.generation,
    caughtUp: false,
    claimRetry: { ...DEFAULT_CLAIM_RETRY, ...input.claimRetry },
    start: input.start ?? 'paired',
  }),
  on: {
    // The guest powered off (its power-off is itself an output, released under the
    // output rule before the runtime reports it): the run is over, whatever the state.
    'vm.halted': { target: '.finished' },
    // NOTE no `digest.mismatch` here: the backup compares digests (DESIGN §3 Divergence) and
    // its chart ends in `diverged`; this side sees only a backup that went silent.
  },
  states: {
    // The node's input picks the first road; nothing has run yet.
    starting: {
      always: [
        { guard: 'startsAlone', target: 'claiming' },
        { target: 'protected', actions: assign({ caughtUp: true }) },
      ],
    },
    // A backup is joining (snapshot streaming, then catching up). It could take over once
    // it has the snapshot, so the output rule already applies to everything logged since.
    protecting: {
      on: {
        'backup.caughtUp': { target: 'protected', actions: assign({ caughtUp: true }) },
        'channel.acked': { actions: 'releaseOutputs' },
        'peer.silent': { target: 'backupSuspect' },
        'channel.failed': { target: 'claiming' },
      },
    },
    protected: {
      initial: 'flowing',
      on: {
        'channel.acked': { actions: 'releaseOutputs' },
        'peer.silent': { target: 'backupSuspect' },
        'channel.failed': { target: 'claiming' },
      },
      states: {
        flowing: {
          on: { 'channel.highWater': { target: 'throttled' } },
        },
        // The backup lags beyond the bound: pause until it catches up. Leaving this state
        // by any route resumes the VM, so it never stays paused by a dead channel.
        throttled: {
          entry: 'pauseVm',
          exit: 'resumeVm',
          on: { 'channel.lowWater': { target: 'flowing' } },
        },
      },
    },
    // Suspicion alone never makes a second primary (DESIGN §3 Failure detection): the VM
    // runs on, outputs stay held, and acks are not trusted until the peer is heard again.
    backupSuspect: {
      on: {
        'peer.heard': [{ guard: 'isCaughtUp', target: 'protected' }, { target: 'protecting' }],
        'suspect.expired': { target: 'claiming' },
        'channel.failed': { target: 'claiming' },
      },
    },
    // DESIGN §3 Split brain: the primary that lost its backup must win the test-and-set
    // before it releases any output alone. The arbiter client keeps trying an unreachable
    // arbiter (its own backoff); meanwhile this state releases nothing.
    claiming: {
      invoke: {
        id: 'arbiter',
        src: 'arbiterClient',
        input: ({ context }) => ({ generation: context.generation, retry: context.claimRetry }),
        onDone: [
          {
            guard: 'claimWon',
            target: 'alone',
            actions: assign({ generation: ({ context }) => context.generation + 1, caughtUp: false }),
          },
          { target: 'halted', actions: 'haltVm' },
        ],
      },
    },
    // Live without a backup, having won: outputs go out directly.
    alone: {
      entry: 'releaseAllOutputs',
      on: { 'backup.joined': { target: 'protecting', actions: assign({ caughtUp: false }) } },
    },
    halted: { type: 'final' },
    finished: { type: 'final' },
  },
});
