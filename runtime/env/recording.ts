import { LiveEnv, type LiveEnvOptions } from './live.js';
import type { Env } from './env.js';
import type { Machine } from '../machine.js';
import type { ValueKind } from '../types.js';
import type { LogPayload } from '../log/entry.js';
import type { IoInput } from '../io/machine-io.js';

/** Where a recording env puts each input: the primary's log (channel or file) assigns seq. */
export type LogSink = (payload: LogPayload, icount: number) => void;

/** An env that applies its inputs through these named steps (LiveEnv, DeterministicEnv). */
export interface InputApplier extends Env {
  applyTimer(m: Machine): void;
  applyConsole(m: Machine, byte: number): void;
}

/** One payload for every timer entry: a sink never keeps or changes what it is given. */
const TIMER: LogPayload = Object.freeze({ type: 'timer' });

// A mixin's base must take any constructor arguments (TypeScript's rule for mixins).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type EnvClass<T> = abstract new (...args: any[]) => T;

/**
 * Log every input an env hands the guest at the icount where it takes effect (DESIGN §2):
 * the base decides what is due; this only adds the logging at the single point where each
 * input is applied, so nothing applied can escape the log. `sink` must be set before use.
 */
export function logsInputs<B extends EnvClass<InputApplier>>(Base: B) {
  abstract class Logging extends Base {
    sink: LogSink = () => {
      throw new Error('logsInputs: no sink');
    };

    override value(kind: ValueKind, icount: number): number {
      const v = super.value(kind, icount);
      this.sink({ type: 'value', kind, value: v }, icount);
      return v;
    }

    override applyTimer(m: Machine): void {
      this.sink(TIMER, m.icount);
      super.applyTimer(m);
    }

    override applyConsole(m: Machine, byte: number): void {
      this.sink({ type: 'console', byte }, m.icount);
      super.applyConsole(m, byte);
    }
  }
  return Logging;
}

/** The primary's environment: the real world, logged (LiveEnv + logsInputs). */
export class RecordingEnv extends logsInputs(LiveEnv) {
  override readonly mode: Env['mode'] = 'record';

  constructor(sink: LogSink, opts: LiveEnvOptions = {}) {
    super(opts);
    this.sink = sink;
  }

  /** disk-read {tag,data}, disk-done {tag,status}, net-rx {frame}: logged as applied. */
  override applyIo(m: Machine, input: IoInput): void {
    this.sink(input, m.icount);
    super.applyIo(m, input);
  }
}
