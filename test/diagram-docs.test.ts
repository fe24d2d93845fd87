// The committed diagrams are generated, never drawn by hand: regenerate them from the chart
// definitions and require the committed copies to match, so a chart cannot change while its
// picture in docs/diagrams/ stays behind.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { diagramFiles, drawAll } from '../runtime/diagram/export.js';
import { loadMachines } from '../runtime/diagram/machines.js';

const DIR = join(import.meta.dirname, '..', 'docs', 'diagrams');
const FIX = 'run `ftvm diagram --out docs/diagrams` (or `node bin/ftvm.js diagram --out docs/diagrams` after `npm run build`) and commit the result';

describe('docs/diagrams', async () => {
  const drawings = await drawAll();
  const files = diagramFiles(drawings, ['mermaid', 'svg']);

  it('covers every chart in machines/', async () => {
    const ids = [...(await loadMachines()).keys()];
    // The three charts the FT pair runs on must be there whatever else is added.
    expect(ids).toEqual(expect.arrayContaining(['cpu', 'primary', 'backup']));
    expect(drawings.map((d) => d.id)).toEqual(ids);
  });

  for (const [name, text] of files) {
    it(`${name} is up to date`, () => {
      let committed: string;
      try {
        committed = readFileSync(join(DIR, name), 'utf8');
      } catch {
        throw new Error(`docs/diagrams/${name} is missing: ${FIX}`);
      }
      expect(committed, `docs/diagrams/${name} is stale: ${FIX}`).toBe(text);
    });
  }

  it('has no diagram of a chart that no longer exists', () => {
    const stale = readdirSync(DIR).filter((f) => !files.has(f));
    expect(stale, `remove these or ${FIX}`).toEqual([]);
  });
});
