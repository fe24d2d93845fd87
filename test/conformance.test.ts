import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { LiveEnv } from '../runtime/env/live.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { runMachine } from '../runtime/runner.js';
import type { Env } from '../runtime/env/env.js';

// Every guest with a QEMU golden (guests/<name>/expected.txt and expected-exit) must print the
// same console bytes and exit with the same code on ftvm, under the same semantics as `ftvm run`:
// live host clock and entropy, and the deterministic env as well.
const guestsDir = new URL('../guests/', import.meta.url);
// A guest with its own golden.sh needs more than `ftvm run` attaches (a disk, a network), so
// the suites for those devices check it instead.
const guests = readdirSync(guestsDir).filter((g) =>
  ['expected.txt', 'expected-exit', `${g}.elf`].every((f) => existsSync(new URL(`${g}/${f}`, guestsDir))) &&
  !existsSync(new URL(`${g}/golden.sh`, guestsDir)));

async function run(name: string, env: Env) {
  const bytes: number[] = [];
  const m = new Machine({ env, onOutput: (o) => { if (o.kind === 'console') bytes.push(o.byte); } });
  m.loadElf(readFileSync(new URL(`${name}/${name}.elf`, guestsDir)));
  const outcome = await runMachine(m, { maxInstructions: 2_000_000_000 });
  return { outcome, text: Buffer.from(bytes).toString('latin1') };
}

describe('conformance with QEMU goldens', () => {
  it('finds the guests that have goldens', () => {
    expect(guests).toEqual(expect.arrayContaining(['hello', 'traps', 'timer']));
  });

  for (const name of guests) {
    const expected = readFileSync(new URL(`${name}/expected.txt`, guestsDir), 'latin1');
    const exit = Number(readFileSync(new URL(`${name}/expected-exit`, guestsDir), 'utf8').trim());
    for (const [label, makeEnv] of [['live', () => new LiveEnv()], ['deterministic', () => new DeterministicEnv({ seed: 3 })]] as const) {
      it(`${name} (${label}) matches QEMU`, async () => {
        const { outcome, text } = await run(name, makeEnv());
        expect(text).toBe(expected);
        expect(outcome.reason).toBe('halt');
        expect(outcome.code).toBe(exit);
      });
    }
  }
});
