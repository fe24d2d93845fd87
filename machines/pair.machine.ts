// The pair as a whole (DESIGN §4): both replicas and the arbiter seen from above, for the
// in-process pair and the demo. It decides which injected fault may happen in which state
// (a kill needs a live victim, a cut needs a channel between two live replicas), when a new
// backup is started (on request, or by itself after a divergence), and it notices if the pair
// ever has two live primaries (DESIGN §6: "never two live primaries"). What the replicas did
// reaches it from the runtime's observations of the nodes (their crashes, run outcomes and
// chart states), never from the method that injected the fault.
import { assign, setup } from 'xstate';

export interface PairContext {
  /**
   * Arbiter generation of the current pair. It advances on each failover: the survivor
   * won generation g, so the backup that re-protects it joins under g + 1, a key nobody
   * has claimed, and an old backup (which can only claim g) can never win again.
   */
  generation: number;
  /** The last backup diverged: once the primary is alone, a new one joins by itself. */
  rebuild: boolean;
}

export type PairEvent =
  /** The runtime booted both replicas and started them. */
  | { type: 'pair.started' }
  /** Operator (test, demo, dashboard): fail-stop the live primary / the backup. */
  | { type: 'fault.killPrimary' }
  | { type: 'fault.killBackup' }
  /** Operator: cut the logging channel while both replicas live: both claim, the arbiter picks one. */
  | { type: 'fault.cutChannel' }
  /** Operator: flip a byte of the backup's RAM (its digest then diverges). */
  | { type: 'fault.corruptBackup' }
  /** Operator: start a new backup that joins the live primary (DESIGN §3 Re-protection). */
  | { type: 'pair.addBackup' }
  /** Observed: the live primary's node crashed; only the backup can go live. */
  | { type: 'pair.primaryDied' }
  /** Observed: the backup's node crashed, halted or gave up; only the primary can go on, alone. */
  | { type: 'pair.backupDied' }
  /** Observed: the backup's replay diverged from the primary (DESIGN §3 Divergence). */
  | { type: 'pair.backupDiverged' }
  /** Observed: the backup won the arbiter, drained its log and went live. */
  | { type: 'pair.backupLive' }
  /** Observed: the primary's chart won the arbiter and releases outputs alone. */
  | { type: 'pair.primaryAlone' }
  /** Observed: the joining backup's snapshot was acknowledged (the primary's chart is protected). */
  | { type: 'pair.backupCaughtUp' }
  /** Observed: the live primary's guest exited and its last output is out. */
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
    /** Fail-stop the live primary's host (and with it its end of the channel). */
    crashPrimary: unwired('crashPrimary'),
    /** Fail-stop the backup's host (and with it its end of the channel). */
    crashBackup: unwired('crashBackup'),
    /** Drop everything on the logging channel, both ways, from now on. */
    cutChannel: unwired('cutChannel'),
    corruptBackup: unwired('corruptBackup'),
    /** Say why a requested fault or re-protection does not apply in this state. */
    refuseRequest: unwired('refuseRequest'),
  },
  guards: {
    mustRebuild: ({ context }) => context.rebuild,
  },
}).createMachine({
  id: 'pair',
  initial: 'starting',
  context: ({ input }) => ({ generation: input.generation, rebuild: false }),
  on: {
    'pair.stop': { target: '.stopped' },
    'pair.guestExited': { target: '.finished' },
    // A request the current state does not take: refused, and said so.
    'fault.killPrimary': { actions: 'refuseRequest' },
    'fault.killBackup': { actions: 'refuseRequest' },
    'fault.cutChannel': { actions: 'refuseRequest' },
    'fault.corruptBackup': { actions: 'refuseRequest' },
    'pair.addBackup': { actions: 'refuseRequest' },
  },
  states: {
    starting: { on: { 'pair.started': { target: 'protected' } } },
    protected: {
      on: {
        'fault.killPrimary': { actions: 'crashPrimary' },
        'fault.killBackup': { actions: 'crashBackup' },
        // Nobody sees a cut on the wire (each side only hears silence): the chart that made
        // it knows the pair is now contested, whoever the arbiter picks.
        'fault.cutChannel': { target: 'failingOver.contested', actions: 'cutChannel' },
        'fault.corruptBackup': { actions: 'corruptBackup' },
        'pair.primaryDied': { target: 'failingOver.toBackup' },
        'pair.backupDied': { target: 'failingOver.toPrimary' },
        'pair.backupDiverged': { target: 'failingOver.toPrimary', actions: assign({ rebuild: true }) },
        // A winner nobody saw a fault for: one replica's thread was starved past the suspicion
        // timeout and the other claimed. The arbiter fenced the slow one (it loses its claim and
        // halts), so the pair has one live replica and no backup: a kill now would hit the
        // only one serving.
        'pair.backupLive': { target: 'unprotected', actions: ['advanceGeneration', 'announceFailover'] },
        'pair.primaryAlone': { target: 'unprotected', actions: ['advanceGeneration', 'announceFailover'] },
      },
    },
    // Someone is claiming the arbiter. Exactly one winner leaves this state.
    failingOver: {
      // Entered only through a child; `contested` is the general case (who is dead is unknown).
      initial: 'contested',
      states: {
        toBackup: {
          on: {
            'fault.killBackup': { actions: 'crashBackup' },
            'pair.backupLive': { target: '#pair.unprotected', actions: ['advanceGeneration', 'announceFailover'] },
            'pair.backupDied': { target: '#pair.lost' },
          },
        },
        toPrimary: {
          on: {
            'fault.killPrimary': { actions: 'crashPrimary' },
            'pair.primaryAlone': { target: '#pair.unprotected', actions: ['advanceGeneration', 'announceFailover'] },
            'pair.primaryDied': { target: '#pair.lost' },
          },
        },
        contested: {
          on: {
            'fault.killPrimary': { actions: 'crashPrimary' },
            'fault.killBackup': { actions: 'crashBackup' },
            'pair.backupLive': { target: '#pair.unprotected', actions: ['advanceGeneration', 'announceFailover'] },
            'pair.primaryAlone': { target: '#pair.unprotected', actions: ['advanceGeneration', 'announceFailover'] },
          },
        },
      },
    },
    // One live primary, no backup.
    unprotected: {
      // DESIGN §3 Divergence: the diverged backup is rebuilt from a snapshot of the survivor.
      always: { guard: 'mustRebuild', target: 'reprotecting', actions: [assign({ rebuild: false }), 'startBackup'] },
      on: {
        'pair.addBackup': { target: 'reprotecting', actions: 'startBackup' },
        'fault.killPrimary': { actions: 'crashPrimary' },
        'pair.primaryDied': { target: 'lost' },
        // A second live replica while one already is: DESIGN §3 Split brain was broken.
        'pair.backupLive': { target: 'splitBrain' },
        'pair.primaryAlone': { target: 'splitBrain' },
      },
    },
    reprotecting: {
      on: {
        'pair.backupCaughtUp': { target: 'protected' },
        'fault.killPrimary': { actions: 'crashPrimary' },
        'fault.killBackup': { actions: 'crashBackup' },
        'fault.cutChannel': { target: 'failingOver.contested', actions: 'cutChannel' },
        // A backup that already loaded the snapshot may claim; one still receiving it
        // cannot (backup chart: `abandoned`) and then reports `pair.backupDied`.
        'pair.primaryDied': { target: 'failingOver.toBackup' },
        'pair.backupDied': { target: 'failingOver.toPrimary' },
        'pair.backupDiverged': { target: 'failingOver.toPrimary', actions: assign({ rebuild: true }) },
      },
    },
    /** No replica is left alive. */
    lost: { type: 'final' },
    splitBrain: { type: 'final', entry: 'reportSplitBrain' },
    stopped: { type: 'final' },
    finished: { type: 'final' },
  },
});
