import { LiveEnv, type LiveEnvOptions } from './live.js';
import type { Env } from './env.js';
import type { Machine } from '../machine.js';
import type { ValueKind } from '../types.js';
import type { LogPayload } from '../log/entry.js';
import type { IoInput } from '../io/machine-io.js';

/** Where a recording env puts each input: the primary's log (channel or file) assigns seq. */
export type LogSink = (payload: LogPayload, icount: number) => void;

/**
 * The primary's environment: the real world, with every input it hands the guest logged at
 * the icount where it takes effect (DESIGN §2). LiveEnv decides what is due; this class only
 * adds the logging at the single point where each input is applied, so nothing applied can
 * escape the log.
 */
export class RecordingEnv extends LiveEnv {
  override readonly mode: Env['mode'] = 'record';

  constructor(private readonly sink: LogSink, opts: LiveEnvOptions = {}) {
    super(opts);
  }

  override value(kind: ValueKind, icount: number): number {
    const v = super.value(kind, icount);
    this.sink({ type: 'value', kind, value: v }, icount);
    return v;
  }

  override applyTimer(m: Machine): void {
    this.sink({ type: 'timer' }, m.icount);
    super.applyTimer(m);
  }

  override applyConsole(m: Machine, byte: number): void {
    this.sink({ type: 'console', byte }, m.icount);
    super.applyConsole(m, byte);
  }

  /** disk-read {tag,data}, disk-done {tag,status}, net-rx {frame}: logged as applied. */
  override applyIo(m: Machine, input: IoInput): void {
    this.sink(input, m.icount);
    super.applyIo(m, input);
  }
}
