// The pair as a whole (DESIGN §4): both replicas and the arbiter seen from above, for the
// in-process pair and the demo. It does not drive the replicas; the runtime reports what
// each did, and this chart keeps the pair's story straight — and notices if it ever has
// two live primaries (DESIGN §6: "never two live primaries").
import { assign, setup } from 'xstate';

export interface PairContext {
  /**
   * Arbiter generation of the current pair. It advances on each failover: the survivor
   * won generation g, so the backup that re-protects it joins under g + 1, a key nobody
   * has claimed, and an old backup (which can only claim g) can never win again.
   */
  generation: number;
}

export type PairEvent =
  | { type: 'pair.started' }
  /** The primary crashed (or was killed); only the backup can go live. */
  | { type: 'pair.primaryDied' }
  /** The backup crashed; only the primary can go on, alone. */
  | { type: 'pair.backupDied' }
  /** The logging channel was cut with both alive: both claim, the arbiter picks one. */
  | { type: 'pair.partitioned' }
  /** The backup won the arbiter, drained its log and went live. */
  | { type: 'pair.backupLive' }
  /** The primary won the arbiter and releases outputs alone. */
  | { type: 'pair.primaryAlone' }
  | { type: 'pair.addBackup' }
  | { type: 'pair.backupCaughtUp' }
  | { type: 'pair.guestExited' }
  | { type: 'pair.stop' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const pairMachine = setup({
  types: { context: {} as PairContext, events: {} as PairEvent, input: {} as { generation: number } },
  actions: {
    /** The generation that was just won is spent (see PairContext). Pure: not for `.provide()`. */
    advanceGeneration: assign({ generation: ({ context }) => context.generation + 1 }),
    /** Tell the world which replica is now the live primary (demo output, metrics). */
    announceFailover: unwired('announceFailover'),
    /** Start a new backup that joins the live primary by snapshot (DESIGN §3 Re-protection). */
    startBackup: unwired('startBackup'),
    /** A second replica claims to be live: the split-brain guard failed. Never ignored. */
    reportSplitBrain: unwired('reportSplitBrain'),
  },
}).createMachine({
  id: 'pair',
  initial: 'starting',
  context: ({ input }) => ({ generation: input.generation }),
  on: {
    'pair.stop': { target: '.stopped' },
    'pair.guestExited': { target: '.finished' },
  },
  states: {
    starting: { on: { 'pair.started': { target: 'protected' } } },
    protected: {
      on: {
        'pair.primaryDied': { target: 'failingOver.toBackup' },
        'pair.backupDied': { target: 'failingOver.toPrimary' },
        'pair.partitioned': { target: 'failingOver.contested' },
      },
    },
    // Someone is claiming the arbiter. Exactly one winner leaves this state.
    failingOver: {
      // Entered only through a child; `contested` is the general case (who is dead is unknown).
      initial: 'contested',
      states: {
        toBackup: {
          on: {
            'pair.backupLive': { target: '#pair.unprotected', actions: ['advanceGeneration', 'announceFailover'] },
            'pair.backupDied': { target: '#pair.lost' },
          },
        },
        toPrimary: {
          on: {
            'pair.primaryAlone': { target: '#pair.unprotected', actions: ['advanceGeneration', 'announceFailover'] },
            'pair.primaryDied': { target: '#pair.lost' },
          },
        },
        contested: {
          on: {
            'pair.backupLive': { target: '#pair.unprotected', actions: ['advanceGeneration', 'announceFailover'] },
            'pair.primaryAlone': { target: '#pair.unprotected', actions: ['advanceGeneration', 'announceFailover'] },
          },
        },
      },
    },
    // One live primary, no backup.
    unprotected: {
      on: {
        'pair.addBackup': { target: 'reprotecting', actions: 'startBackup' },
        'pair.primaryDied': { target: 'lost' },
        // A second live replica while one already is: DESIGN §3 Split brain was broken.
        'pair.backupLive': { target: 'splitBrain' },
        'pair.primaryAlone': { target: 'splitBrain' },
      },
    },
    reprotecting: {
      on: {
        'pair.backupCaughtUp': { target: 'protected' },
        // A backup that already loaded the snapshot may claim; one still receiving it
        // cannot (backup chart: `abandoned`) and then reports `pair.backupDied`.
        'pair.primaryDied': { target: 'failingOver.toBackup' },
        'pair.backupDied': { target: 'failingOver.toPrimary' },
        'pair.partitioned': { target: 'failingOver.contested' },
      },
    },
    /** No replica is left alive. */
    lost: { type: 'final' },
    splitBrain: { type: 'final', entry: 'reportSplitBrain' },
    stopped: { type: 'final' },
    finished: { type: 'final' },
  },
});
