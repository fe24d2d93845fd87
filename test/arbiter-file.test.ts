import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { ArbiterUnavailableError } from '../runtime/arbiter/arbiter.js';
import { FileArbiter } from '../runtime/arbiter/file.js';

const root = await mkdtemp(join(tmpdir(), 'ftvm-file-arbiter-'));
afterAll(() => rm(root, { recursive: true, force: true }));

/** Transpiles the arbiter sources into `out` so plain `node` child processes can import them. */
async function buildArbiterJs(out: string): Promise<void> {
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'package.json'), '{"type":"module"}');
  for (const name of ['arbiter', 'file']) {
    const src = await readFile(new URL(`../runtime/arbiter/${name}.ts`, import.meta.url), 'utf8');
    const js = ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    await writeFile(join(out, `${name}.js`), js.outputText);
  }
  // Each child waits for a common start time so their claims really overlap.
  await writeFile(
    join(out, 'race.js'),
    `import { FileArbiter } from './file.js';
const [dir, claimant, gens, startAt] = process.argv.slice(2);
const a = new FileArbiter(dir);
while (Date.now() < Number(startAt)) await new Promise((r) => setTimeout(r, 1));
const results = await Promise.all(Array.from({ length: Number(gens) }, (_, g) => a.testAndSet('race', g, claimant)));
process.stdout.write(JSON.stringify(results));
`,
  );
}

const run = (args: string[]): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`child exited ${code}`))));
  });

describe('FileArbiter', () => {
  it('has exactly one winner per generation among racing processes', async () => {
    const js = join(root, 'js');
    const dir = join(root, 'race');
    await buildArbiterJs(js);
    await mkdir(dir);
    const procs = 6;
    const gens = 25;
    const startAt = Date.now() + 1500;
    const outs = await Promise.all(
      Array.from({ length: procs }, (_, i) => run([join(js, 'race.js'), dir, `proc-${i}`, String(gens), String(startAt)])),
    );
    const results = outs.map((o) => JSON.parse(o) as string[]);
    const arbiter = new FileArbiter(dir);
    for (let g = 0; g < gens; g++) {
      const winners = results.flatMap((r, i) => (r[g] === 'won' ? [`proc-${i}`] : []));
      expect(winners, `generation ${g}`).toHaveLength(1);
      expect(await arbiter.holder('race', g)).toBe(winners[0]);
    }
    // No temp files are left behind, only one claim per generation.
    expect((await readdir(dir)).sort()).toEqual(Array.from({ length: gens }, (_, g) => `race.${g}.claim`).sort());
  }, 30_000);

  it('writes the claimant and a timestamp into the claim file', async () => {
    const dir = join(root, 'content');
    await mkdir(dir);
    const before = Date.now();
    expect(await new FileArbiter(dir).testAndSet('p', 7, 'host-b')).toBe('won');
    const claim = JSON.parse(await readFile(join(dir, 'p.7.claim'), 'utf8')) as { claimant: string; at: string; pid: number };
    expect(claim.claimant).toBe('host-b');
    expect(claim.pid).toBe(process.pid);
    expect(Date.parse(claim.at)).toBeGreaterThanOrEqual(before - 1000);
  });

  it('reports an unreachable directory as ArbiterUnavailableError, deciding nothing', async () => {
    const a = new FileArbiter(join(root, 'missing', 'deeper'));
    await expect(a.testAndSet('p', 1, 'x')).rejects.toBeInstanceOf(ArbiterUnavailableError);
    await expect(a.holder('p', 1)).rejects.toBeInstanceOf(ArbiterUnavailableError);
    const notDir = join(root, 'plain-file');
    await writeFile(notDir, 'x');
    await expect(new FileArbiter(notDir).testAndSet('p', 1, 'x')).rejects.toBeInstanceOf(ArbiterUnavailableError);
  });
});
