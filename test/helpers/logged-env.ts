import { DeterministicEnv, type DeterministicEnvOptions } from '../../runtime/env/deterministic.js';
import { logsInputs, type LogSink } from '../../runtime/env/recording.js';

/**
 * A deterministic world whose inputs (timer rate, entropy, console bytes) a test shapes,
 * logged exactly as RecordingEnv logs the live world (the same logsInputs).
 */
export class LoggedDeterministicEnv extends logsInputs(DeterministicEnv) {
  constructor(sink: LogSink, opts: DeterministicEnvOptions = {}) {
    super(opts);
    this.sink = sink;
  }
}
