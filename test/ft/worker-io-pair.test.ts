// createPair with a disk and a network and its backup in a worker thread (issue 13): the
// backends cannot cross threads, so the worker opens its own from their specs at go-live,
// once the primary here has let go of them. Killed under client load, the pair must lose
// nothing: every dns query answered as the zone says; no acknowledged kv write lost, none
// applied twice; and the new primary in the worker answers the clients itself.
import { describe, expect, it } from 'vitest';
import { dnsScenario, runScenario, summary, type GuestScenario, type Load, type ScenarioResult } from '../../runtime/demo/dns-load.js';
import { kvScenario } from '../../runtime/demo/kv-load.js';

// Two threads on a loaded 2-core host: suspicion slow enough that only the kill fails over.
// At 400 + 100 ms, at load 18-23, a starved thread made one replica declare the other dead
// before the kill in 11 of 19 runs (docs/BENCHMARKS.md "Go-live of an I/O backup (issue
// 13)"); at 1000 + 200 ms in none of 8. What this test judges is the go-live with I/O in the
// worker (about 70 ms from the won claim to the ports bound), not how fast a silence is
// detected (bench/detect.mjs measures that).
const pair = { backupIn: 'worker' as const, timing: { suspectMs: 1000, confirmMs: 200 } };

function expectClean(r: ScenarioResult, what: string): void {
  const why = summary(r, what).join('\n') + '\n' + r.events.filter((e) => e.node !== 'primary').map((e) => `${e.node} ${e.type} ${e.detail}`).join('\n');
  expect(r.killed, why).toBe(true);
  expect(r.failovers, why).toBe(1);
  expect(r.lostOutputs, why).toBe(0);
  expect(r.answeredBefore, why).toBeGreaterThan(0);
  expect(r.answeredAfter, why).toBeGreaterThan(0);
  expect(r.check.errors, why).toEqual([]);
  expect(r.check.ok, why).toBe(true);
  // The worker's replica opened the disk and bound the port itself, after the primary let go.
  expect(r.events.some((e) => e.node === 'backup' && /^took over disk file:.*\.img and the service ports in/.test(e.detail)), why).toBe(true);
  // And the clients' answers after the kill came from it.
  expect(r.released.backup?.net ?? 0, why).toBeGreaterThan(0);
}

/**
 * A run whose pair lost its protection before the kill moment (a starved thread outlived the
 * suspicion timeout, and one replica declared the other dead: docs/BENCHMARKS.md "Go-live of
 * an I/O backup (issue 13)") is not killed: it is judged for what still matters (every answer
 * right, no output lost, never a second failover) and the next seed is run, up to ATTEMPTS.
 */
const ATTEMPTS = 4;

async function killedRun<L extends Load>(g: GuestScenario<L>, seed: number, what: string): Promise<ScenarioResult> {
  const skipped: string[] = [];
  for (let i = 0; i < ATTEMPTS; i++) {
    const r = await runScenario(g, { seed: seed + i, afterFailoverMs: 500, pair });
    if (r.killed || r.unprotectedBeforeKill === undefined) return r;
    const why = summary(r, what).join('\n');
    expect(r.failovers, why).toBeLessThanOrEqual(1);
    expect(r.lostOutputs, why).toBe(0);
    expect(r.check.errors, why).toEqual([]);
    expect(r.check.ok, why).toBe(true);
    skipped.push(`seed ${seed + i}: ${r.unprotectedBeforeKill}`);
  }
  throw new Error(`no run reached the kill protected, in ${ATTEMPTS} seeds: the host starved the pair into a failover first each time:\n${skipped.join('\n')}`);
}

describe('pair with disk and network, backup in a worker: kill the primary under load', () => {
  it('dns: every query is answered as the zone says', async () => {
    const r = await killedRun(dnsScenario, 7, 'queries');
    expectClean(r, 'queries');
  }, 120_000);

  it('kv: no acknowledged write lost, no request applied twice; both threads wrote the disk', async () => {
    const r = await killedRun(kvScenario, 42, 'requests');
    expectClean(r, 'requests');
    expect(r.released.primary?.disk ?? 0).toBeGreaterThan(0);
    expect(r.released.backup?.disk ?? 0).toBeGreaterThan(0);
  }, 120_000);
});
