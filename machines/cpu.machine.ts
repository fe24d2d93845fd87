// CPU control (DESIGN §4): the instruction loop is plain TypeScript run in batches; this
// chart only decides whether another batch runs. It never sees an instruction: the batch
// runner sends exactly one `cpu.batchEnded` per batch, and the runtime's effects
// (`scheduleBatch`, ...) are supplied with `.provide()`. Batches run back to back while the
// chart is in `running` or `runningUntil`: entering starts the first (`scheduleBatch`), and
// after each `cpu.batchEnded` the runner starts the next only if the chart is still there. Every execution runs under it:
// `ftvm run` (live), `ftvm record` and the primary (record), `ftvm replay` and the backup
// (replay, to an icount with `cpu.runUntil`), and a backup's go-live (`cpu.takeover`, the
// env switched in place on the same machine).
import { assign, setup } from 'xstate';

/** live: no FT; record: primary, logs every input; replay: backup, reads inputs from the log. */
export type CpuMode = 'live' | 'record' | 'replay';

/**
 * Why a batch ended. budget: its instruction budget ran out; request: the guest ended it
 * early (a write to mie/mstatus/mtimecmp, STYLE "Exits and traps"); wfi: the hart waits
 * for an interrupt; halt: the guest powered off; fault: the machine cannot go on (e.g. a
 * replay mismatch); target: the icount set by `cpu.runUntil` was reached; horizon: the
 * env let no instruction run (a replay waiting for its log), so the CPU must wait, not spin.
 */
export type BatchExit = 'budget' | 'request' | 'wfi' | 'halt' | 'fault' | 'target' | 'horizon';

export interface CpuContext {
  mode: CpuMode;
}

export type CpuEvent =
  | { type: 'cpu.start'; mode: CpuMode }
  | { type: 'cpu.pause' }
  | { type: 'cpu.resume' }
  | { type: 'cpu.runUntil'; icount: number }
  | { type: 'cpu.batchEnded'; exit: BatchExit }
  | { type: 'cpu.inputDelivered' }
  /** The env could not wait for input (a deterministic guest that can never wake, a broken log). */
  | { type: 'cpu.envFailed' }
  /** Go-live: leave replay for `mode` (a backup becoming primary logs for a future backup). */
  | { type: 'cpu.takeover'; mode: 'live' | 'record' }
  | { type: 'cpu.stop' };

const unwired = (name: string) => () => {
  throw new Error(`${name}: not provided`);
};

export const cpuMachine = setup({
  types: { context: {} as CpuContext, events: {} as CpuEvent },
  actions: {
    /**
     * Start running batches (asynchronously; each answers with `cpu.batchEnded`, and the next
     * follows while the chart stays in `running`/`runningUntil`).
     */
    scheduleBatch: unwired('scheduleBatch'),
    /** Record the icount of `cpu.runUntil` as the batch runner's stop target. */
    setRunTarget: unwired('setRunTarget'),
    /** Idle until an interrupt or input is due; the runtime answers `cpu.inputDelivered`. */
    awaitInput: unwired('awaitInput'),
    /** Go-live: swap ReplayEnv for the event's live or recording env at this batch boundary (DESIGN §3 Go-live). */
    swapToLiveEnv: unwired('swapToLiveEnv'),
    reportHalt: unwired('reportHalt'),
    reportFault: unwired('reportFault'),
  },
  guards: {
    isExit: ({ event }, params: { exit: BatchExit }) =>
      event.type === 'cpu.batchEnded' && event.exit === params.exit,
    isReplaying: ({ context }) => context.mode === 'replay',
    /** A wfi the CPU sleeps on: any but a replay's (see `runningUntil`). */
    isSleepingWfi: ({ context, event }) => event.type === 'cpu.batchEnded' && event.exit === 'wfi' && context.mode !== 'replay',
  },
}).createMachine({
  id: 'cpu',
  initial: 'stopped',
  context: { mode: 'live' },
  on: {
    // Stop is a reset from anywhere; the runtime reloads the machine before a new start.
    'cpu.stop': { target: '.stopped' },
  },
  states: {
    stopped: {
      on: {
        'cpu.start': { target: 'running', actions: assign({ mode: ({ event }) => event.mode }) },
      },
    },
    running: {
      entry: 'scheduleBatch',
      on: {
        // A batch that simply ran out ('budget') or was cut short by the guest ('request')
        // takes no transition: the CPU stays running, so the next batch follows. ('target'
        // without a runUntil in force is stale: the same.) Every other exit leaves.
        // NOTE no transition at all, not a targetless one with `scheduleBatch`: this is the
        // event of every batch, and XState v5 charges a selected transition its microstep and
        // an action its executor, 1.1 against 0.64 µs CPU here (docs/BENCHMARKS.md, "CPU chart").
        'cpu.batchEnded': [
          { guard: { type: 'isExit', params: { exit: 'wfi' } }, target: 'waitingForInterrupt' },
          { guard: { type: 'isExit', params: { exit: 'horizon' } }, target: 'waitingForInterrupt' },
          { guard: { type: 'isExit', params: { exit: 'halt' } }, target: 'halted' },
          { guard: { type: 'isExit', params: { exit: 'fault' } }, target: 'faulted' },
        ],
        'cpu.pause': { target: 'paused' },
        'cpu.runUntil': { target: 'runningUntil', actions: 'setRunTarget' },
      },
    },
    waitingForInterrupt: {
      entry: 'awaitInput',
      on: {
        'cpu.inputDelivered': { target: 'running' },
        'cpu.envFailed': { target: 'faulted' },
        'cpu.pause': { target: 'paused' },
        'cpu.runUntil': { target: 'runningUntil', actions: 'setRunTarget' },
      },
    },
    runningUntil: {
      entry: 'scheduleBatch',
      on: {
        // As in `running`, 'budget' and 'request' take no transition: the run goes on.
        'cpu.batchEnded': [
          { guard: { type: 'isExit', params: { exit: 'target' } }, target: 'paused' },
          // NOTE: wfi may legally retire as a no-op (RISC-V privileged spec, WFI). Under
          // replay the log, not a host wait, says when the next interrupt lands, so a wfi
          // takes no transition: the run continues toward its target and the env delivers
          // the input at its icount. Live, a sleeping guest waits for its interrupt as it
          // would without a target.
          { guard: 'isSleepingWfi', target: 'waitingUntil' },
          { guard: { type: 'isExit', params: { exit: 'horizon' } }, target: 'waitingUntil' },
          { guard: { type: 'isExit', params: { exit: 'halt' } }, target: 'halted' },
          { guard: { type: 'isExit', params: { exit: 'fault' } }, target: 'faulted' },
        ],
        'cpu.pause': { target: 'paused' },
        'cpu.runUntil': { target: 'runningUntil', reenter: true, actions: 'setRunTarget' },
      },
    },
    // Asleep (wfi live, or a replay at the end of its log) with a target still in force.
    waitingUntil: {
      entry: 'awaitInput',
      on: {
        'cpu.inputDelivered': { target: 'runningUntil' },
        'cpu.envFailed': { target: 'faulted' },
        'cpu.pause': { target: 'paused' },
        'cpu.runUntil': { target: 'runningUntil', actions: 'setRunTarget' },
      },
    },
    paused: {
      on: {
        'cpu.resume': { target: 'running' },
        'cpu.runUntil': { target: 'runningUntil', actions: 'setRunTarget' },
        // A batch already in flight when the pause came still reports truthfully: a halt
        // or fault must not be lost. Other exits just leave the CPU paused (a wfi retires
        // as a no-op; the guest re-executes it after resume).
        'cpu.batchEnded': [
          { guard: { type: 'isExit', params: { exit: 'halt' } }, target: 'halted' },
          { guard: { type: 'isExit', params: { exit: 'fault' } }, target: 'faulted' },
        ],
        // Go-live happens only at a batch boundary, after the log is drained (the backup
        // ran until its last entry and paused): DESIGN §3 Go-live, STYLE "One environment
        // seam". Only a replaying CPU can take over.
        'cpu.takeover': {
          guard: 'isReplaying',
          target: 'running',
          actions: ['swapToLiveEnv', assign({ mode: ({ event }) => event.mode })],
        },
      },
    },
    halted: { entry: 'reportHalt' },
    faulted: { entry: 'reportFault' },
  },
});
