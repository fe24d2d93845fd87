// The arbiter-client chart's paths, each driven through a real PrimaryNode that claims (a
// backup gone live re-claiming its key): its ArbiterClaims call, its arbiter-client actor on
// real timers, its output gate. The arbiter at the wire answers each attempt as the path says
// (won, lost, or unreachable). Each step checks what the product shows: the attempts the
// arbiter saw and when, what the operator was told, outputs held until a win and released
// after it, the node stopping on a loss.
import { describe, expect, it } from 'vitest';
import type { AnyMachineSnapshot, EventObject } from 'xstate';
import { arbiterClientMachine, claimRetryDelayMs } from '../../machines/arbiter-client.machine.js';
import { ArbiterUnavailableError, type Arbiter } from '../../runtime/arbiter/arbiter.js';
import { InProcessArbiter } from '../../runtime/arbiter/in-process.js';
import { PrimaryNode, type NodeEvent } from '../../runtime/ft/primary-node.js';
import { Machine } from '../../runtime/machine.js';
import { LiveEnv } from '../../runtime/env/live.js';
import type { ReleasedOutput } from '../../runtime/ft/output-gate.js';
import type { RunOutcome } from '../../runtime/runner.js';
import { chartPaths } from './harness.js';
import { image } from '../helpers/boot.js';
import { sleep, waitFor } from './node-world.js';

const DONE = 'xstate.done.actor.testAndSet';
const ERROR = 'xstate.error.actor.testAndSet';
const AFTER = 'xstate.after.retryDelay.arbiterClient.unreachable';
const RETRY = { firstMs: 20, maxMs: 60 };
const PAIR = 'ma';

/** An arbiter whose every attempt waits for the test's answer: a verdict or unreachable. */
class ScriptedArbiter implements Arbiter {
  readonly inner = new InProcessArbiter();
  readonly calls: { atMs: number; settle: (how: 'won' | 'lost' | 'down') => void; settledAtMs?: number }[] = [];
  testAndSet(pairId: string, generation: number, claimant: string): Promise<'won' | 'lost'> {
    return new Promise((resolve, reject) => {
      const call: (typeof this.calls)[number] = {
        atMs: performance.now(),
        settle: (how) => {
          call.settledAtMs = performance.now();
          if (how === 'down') reject(new ArbiterUnavailableError('arbiter: unavailable (fault injected)'));
          else {
            // A loss is real: another replica holds the key in the store.
            if (how === 'lost') void this.inner.testAndSet(pairId, generation, 'rival');
            resolve(this.inner.testAndSet(pairId, generation, claimant));
          }
        },
      };
      this.calls.push(call);
    });
  }
  holder(pairId: string, generation: number) {
    return this.inner.holder(pairId, generation);
  }
  close() {
    return this.inner.close();
  }
}

type Step = { event: EventObject & { output?: unknown }; state: AnyMachineSnapshot };

async function drive(steps: Step[]): Promise<string | undefined> {
  const label = steps.map((s) => (s.event.type === DONE ? `done:${String(s.event.output)}` : s.event.type.replace(/^xstate\./, ''))).join(' → ');
  const m = new Machine({ env: new LiveEnv() });
  m.loadElf(image('seq'));
  const arbiter = new ScriptedArbiter();
  const node = new PrimaryNode({
    name: 'p', pairId: PAIR, generation: 1, machine: m, arbiter, startAlone: true,
    timing: { claimRetryMs: RETRY.firstMs, claimRetryMaxMs: RETRY.maxMs },
  });
  const released: ReleasedOutput[] = [];
  const notes: NodeEvent[] = [];
  node.released$.subscribe((o) => released.push(o));
  node.events$.subscribe((e) => notes.push(e));
  let outcome: RunOutcome | undefined;
  const run = node.run().then((o) => (outcome = o));
  try {
    for (let i = 1; i < steps.length; i++) {
      const { event } = steps[i]!;
      const prev = steps[i - 1]!.state;
      const attempt = prev.context.attempt as number;
      const at = `${label} at step ${i}`;
      switch (event.type) {
        case DONE: {
          const verdict = event.output;
          // A real arbiter answers only won or lost (typed so); anything else is no road.
          if (verdict !== 'won' && verdict !== 'lost') return `${at}: an answer no arbiter gives`;
          expect(await waitFor(() => arbiter.calls.length === attempt, 1000), at).toBe(true);
          // Until the verdict, the guest runs and nothing leaves.
          expect(await waitFor(() => node.unreleased() > 0, 3000), `${at}: an output waits`).toBe(true);
          expect(released, at).toEqual([]);
          arbiter.calls[attempt - 1]!.settle(verdict);
          expect(await arbiter.holder(PAIR, 1).then((h) => h), at).toBe(verdict === 'won' ? 'p' : 'rival');
          if (verdict === 'won') {
            expect(await waitFor(() => released.length > 0 && node.unreleased() === 0, 1000), `${at}: held outputs leave`).toBe(true);
            expect(released.every((o) => o.generation === 2), at).toBe(true);
          } else {
            expect(await waitFor(() => outcome !== undefined, 1000), `${at}: the node stops`).toBe(true);
            expect(released, at).toEqual([]);
            expect(notes.some((n) => n.type === 'arbiter' && /held by "rival"/.test(n.detail)), at).toBe(true);
          }
          break;
        }
        case ERROR:
          expect(await waitFor(() => arbiter.calls.length === attempt, 1000), at).toBe(true);
          arbiter.calls[attempt - 1]!.settle('down');
          await sleep(2);
          // Said so (at a bounded rate: the first failure always), and nothing decided.
          if (attempt === 1) expect(notes.some((n) => n.type === 'arbiter' && /unreachable \(attempt 1\).*retrying in 20 ms/.test(n.detail)), at).toBe(true);
          expect(released, at).toEqual([]);
          expect(outcome, at).toBeUndefined();
          break;
        case AFTER: {
          const wait = claimRetryDelayMs(RETRY, attempt);
          const failedAt = arbiter.calls[attempt - 1]!.settledAtMs!;
          expect(await waitFor(() => arbiter.calls.length === attempt + 1, wait + 500), `${at}: attempt ${attempt + 1}`).toBe(true);
          // The retry waits its delay (timers may run late on a busy host, never early).
          expect(arbiter.calls[attempt]!.atMs - failedAt, at).toBeGreaterThanOrEqual(wait - 2);
          break;
        }
        default:
          throw new Error(`${at}: no way to make ${event.type} happen`);
      }
    }
    return undefined;
  } finally {
    if (!outcome) node.crash('path done');
    for (const c of arbiter.calls) if (c.settledAtMs === undefined) c.settle('down');
    await run;
  }
}

describe('arbiter-client chart on a real claiming PrimaryNode', () => {
  const paths = chartPaths(arbiterClientMachine, {
    input: { generation: 1, retry: RETRY },
    // A real arbiter answers won or lost (typed so): the chart's "decides nothing" answer is
    // covered in virtual time by arbiter-client.machine.test.ts, not here.
    variants: [{ type: DONE, output: 'won' }, { type: DONE, output: 'lost' }] as unknown as EventObject[],
    stopWhen: (s) => s.status === 'done' || s.context.attempt >= 5,
  });

  it('follows every shortest path, with real timers and a real output gate', { timeout: 120_000 }, async () => {
    expect(paths.length).toBeGreaterThan(8);
    const skipped: string[] = [];
    for (const p of paths) {
      const why = await drive(p.steps as Step[]);
      if (why) skipped.push(why);
    }
    expect(skipped).toEqual([]);
  });
});
