import type { Machine } from '../../runtime/machine.js';

/**
 * A slower host for `m`: each of its batches then busy-waits `factor` times its own time (a
 * host `factor + 1` times slower). The returned `factor` may be changed at any time; 0 is full speed.
 */
export function slowHost(m: Machine, factor = 0): { factor: number } {
  const host = { factor };
  const step = m.step.bind(m);
  m.step = (max, soft) => {
    const t0 = performance.now();
    const exit = step(max, soft);
    for (const until = performance.now() + host.factor * (performance.now() - t0); performance.now() < until;) { /* the slow host */ }
    return exit;
  };
  return host;
}
