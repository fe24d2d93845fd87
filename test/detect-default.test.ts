// The heartbeat link stays off by default in `ftvm primary` / `ftvm backup` (fourth detection
// pass, docs/BENCHMARKS.md: no fewer spurious failovers than without it, at a CPU cost):
// without a flag (or with `--no-heartbeat-link`) no link runs and the pair completes right;
// `--heartbeat-link` on both nodes turns it on and both beat and hear each other; both flags
// at once are one `ftvm:` line (and the usage) and exit 2 for either command, before anything runs.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkHistory } from '../runtime/faults/checker.js';
import { readOutputLog } from '../runtime/faults/output-log.js';
import { killAll, root, startFtvm } from './helpers/cli-procs.js';

const guest = join(root, 'guests/seq-short/seq-short.elf');
const dirs: string[] = [];
afterAll(() => {
  killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fresh() {
  const d = mkdtempSync(join(tmpdir(), 'ftvm-detect-default-'));
  dirs.push(d);
  writeFileSync(join(d, 'key'), 'cd'.repeat(32));
  mkdirSync(join(d, 'arb'));
  // A floor well above a loaded machine's stalls: these tests are about the flag, not timing.
  const common = (out: string, more: string[] = []): string[] => [
    '--key-file', join(d, 'key'), '--arbiter', `file:${join(d, 'arb')}`, '--outputs', join(d, out), '--suspect-ms', '1000', ...more,
  ];
  return { d, common };
}

async function runPair(more: string[]) {
  const { d, common } = fresh();
  const p = startFtvm(['primary', guest, '--listen', '127.0.0.1:0', ...common('p.jsonl', more)]);
  const port = Number((await p.waitErr(/primary listening 127\.0\.0\.1:(\d+) /))[1]);
  const b = startFtvm(['backup', guest, '--connect', `127.0.0.1:${port}`, ...common('b.jsonl', more)]);
  expect(await p.exit).toBe('0');
  expect(await b.exit).toBe('0');
  expect(readdirSync(join(d, 'arb')).filter((f) => f.endsWith('.claim'))).toEqual([]);
  const v = checkHistory(['p.jsonl', 'b.jsonl'].flatMap((f) => readOutputLog(join(d, f))), new Map());
  expect(v.errors).toEqual([]);
  expect(v.lines).toBeGreaterThan(0);
  return { p, b };
}

describe('the heartbeat link by default', () => {
  it('is on with --heartbeat-link on both nodes: both beat and hear each other', async () => {
    const { p, b } = await runPair(['--heartbeat-link']);
    for (const [node, text] of [['primary', p.err()], ['backup', b.err()]] as const) {
      const m = new RegExp(`${node} heartbeat link: beats sent (\\d+) heard (\\d+)`).exec(text);
      expect(m, text).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThan(10);
      expect(Number(m![2])).toBeGreaterThan(10);
    }
  });

  it('is off without a flag and with --no-heartbeat-link, and the pair runs right', async () => {
    for (const more of [[], ['--no-heartbeat-link']]) {
      const { p, b } = await runPair(more);
      expect(p.err()).not.toMatch(/heartbeat link/);
      expect(b.err()).not.toMatch(/heartbeat link/);
    }
  });

  it('--heartbeat-link with --no-heartbeat-link is one ftvm: line and exit 2, for either command', async () => {
    const { common } = fresh();
    for (const args of [
      ['primary', guest, '--listen', '127.0.0.1:0', ...common('p.jsonl', ['--heartbeat-link', '--no-heartbeat-link'])],
      ['backup', guest, '--connect', '127.0.0.1:1', ...common('b.jsonl', ['--heartbeat-link', '--no-heartbeat-link'])],
    ]) {
      const x = startFtvm(args);
      expect(await x.exit).toBe('2');
      // One plain line, then the usage, as for every bad flag.
      expect(x.err().split('\n')[0]).toBe('ftvm: --heartbeat-link and --no-heartbeat-link contradict each other: give one');
      expect(x.err().match(/^ftvm: /gm)).toHaveLength(1);
      expect(x.err()).toMatch(/^usage: ftvm (primary|backup) /m);
    }
  });
});
