// The main thread's CPU time and run-queue wait so far (ms), from its schedstat (the main
// thread's tid is the pid); NaN where /proc has none (not Linux).
import { readFileSync } from 'node:fs';

export function mainThreadSchedstat() {
  try {
    const [cpuNs, waitNs] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { cpuMs: cpuNs / 1e6, waitMs: waitNs / 1e6 };
  } catch {
    return { cpuMs: NaN, waitMs: NaN };
  }
}
