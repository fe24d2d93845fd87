import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { allMachines } from '../../machines/index.js';

const dir = fileURLToPath(new URL('../../machines/', import.meta.url));

describe('machines/index', () => {
  it('lists every chart file exactly once, under its file name', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.machine.ts')).map((f) => f.replace(/\.machine\.ts$/, ''));
    expect(Object.keys(allMachines).sort()).toEqual(files.sort());
  });

  it('has a model test for every chart (DESIGN §6)', () => {
    const tests = readdirSync(fileURLToPath(new URL('./', import.meta.url)));
    for (const name of Object.keys(allMachines)) expect(tests).toContain(`${name}.machine.test.ts`);
  });

  it('leaves every effect unwired until provided', () => {
    for (const [name, machine] of Object.entries(allMachines)) {
      const actions = (machine.implementations.actions ?? {}) as Record<string, unknown>;
      for (const [action, impl] of Object.entries(actions)) {
        // Built-in actions (assign) are pure and carry an xstate type; effects do not.
        if ((impl as { type?: string }).type?.startsWith('xstate.')) continue;
        expect(() => (impl as () => void)(), `${name}.${action}`).toThrow(/not provided/);
      }
    }
  });
});
