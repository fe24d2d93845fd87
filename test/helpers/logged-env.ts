import { DeterministicEnv, type DeterministicEnvOptions } from '../../runtime/env/deterministic.js';
import type { Machine } from '../../runtime/machine.js';
import type { LogPayload } from '../../runtime/log/entry.js';
import type { ValueKind } from '../../runtime/types.js';

/**
 * A deterministic world whose inputs (timer rate, entropy, console bytes) a test shapes,
 * logged at the point each is applied, exactly as RecordingEnv logs the live world.
 */
export class LoggedDeterministicEnv extends DeterministicEnv {
  constructor(private readonly sink: (p: LogPayload, icount: number) => void, opts: DeterministicEnvOptions = {}) {
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
}
