import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Arbiter } from '../runtime/arbiter/arbiter.js';
import { FileArbiter } from '../runtime/arbiter/file.js';
import { InProcessArbiter } from '../runtime/arbiter/in-process.js';

const root = await mkdtemp(join(tmpdir(), 'ftvm-arbiter-'));
afterAll(() => rm(root, { recursive: true, force: true }));
let dirs = 0;
const fileArbiter = async (): Promise<Arbiter> => {
  const dir = join(root, `d${dirs++}`);
  await import('node:fs/promises').then((fs) => fs.mkdir(dir));
  return new FileArbiter(dir);
};

describe.each([
  ['InProcessArbiter', async (): Promise<Arbiter> => new InProcessArbiter()],
  ['FileArbiter', fileArbiter],
] as const)('%s', (_name, make) => {
  it('lets exactly one of many concurrent claimants win', async () => {
    const a = await make();
    const claimants = Array.from({ length: 40 }, (_, i) => `node-${i}`);
    const results = await Promise.all(claimants.map((c) => a.testAndSet('pair', 1, c)));
    const winners = claimants.filter((_, i) => results[i] === 'won');
    expect(winners).toHaveLength(1);
    expect(await a.holder('pair', 1)).toBe(winners[0]);
  });

  it('answers the winner again with won, everyone else with lost', async () => {
    const a = await make();
    expect(await a.holder('p', 3)).toBeUndefined();
    expect(await a.testAndSet('p', 3, 'backup')).toBe('won');
    expect(await a.testAndSet('p', 3, 'backup')).toBe('won');
    expect(await a.testAndSet('p', 3, 'primary')).toBe('lost');
    expect(await a.holder('p', 3)).toBe('backup');
  });

  it('keeps generations and pairs independent', async () => {
    const a = await make();
    expect(await a.testAndSet('p', 1, 'A')).toBe('won');
    expect(await a.testAndSet('p', 2, 'B')).toBe('won');
    expect(await a.testAndSet('p', 2, 'A')).toBe('lost');
    expect(await a.testAndSet('q', 1, 'B')).toBe('won');
    expect([await a.holder('p', 1), await a.holder('p', 2), await a.holder('q', 1)]).toEqual(['A', 'B', 'B']);
  });

  it('rejects malformed keys', async () => {
    const a = await make();
    await expect(a.testAndSet('../etc', 1, 'x')).rejects.toBeInstanceOf(RangeError);
    await expect(a.testAndSet('p', -1, 'x')).rejects.toBeInstanceOf(RangeError);
    await expect(a.testAndSet('p', 1.5, 'x')).rejects.toBeInstanceOf(RangeError);
    await expect(a.testAndSet('p', 1, '')).rejects.toBeInstanceOf(RangeError);
  });

  it('agrees with a first-claim-wins model on random claim sequences', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom('a', 'b'), fc.nat(3), fc.constantFrom('x', 'y', 'z')), { maxLength: 25 }),
        async (claims) => {
          const a = await make();
          const model = new Map<string, string>();
          for (const [pair, gen, who] of claims) {
            const key = `${pair}.${gen}`;
            if (!model.has(key)) model.set(key, who);
            expect(await a.testAndSet(pair, gen, who)).toBe(model.get(key) === who ? 'won' : 'lost');
          }
          for (const [key, who] of model) {
            const [pair, gen] = key.split('.');
            expect(await a.holder(pair!, Number(gen))).toBe(who);
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it('refuses calls after close', async () => {
    const a = await make();
    await a.close();
    await expect(a.testAndSet('p', 1, 'x')).rejects.toThrow(/closed/);
  });
});
