import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Machine } from '../../runtime/machine.js';
import { DeterministicEnv } from '../../runtime/env/deterministic.js';
import { DivergenceError, ReplayEnv } from '../../runtime/env/replay.js';
import type { LogEntry, LogPayload } from '../../runtime/log/entry.js';
import { SeqLog } from '../../runtime/ft/seq-log.js';
import { LoggedDeterministicEnv } from '../helpers/logged-env.js';
import { runMachine } from '../../runtime/runner.js';
import { guestPath } from '../../runtime/guests.js';
import type { ValueKind } from '../../runtime/types.js';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;
const ftvm = join(root, 'bin/ftvm.js');


async function recordThenReplay(guest: string, opts: ConstructorParameters<typeof DeterministicEnv>[0], batch: number) {
  const image = readFileSync(guestPath(guest));
  const entries: LogEntry[] = [];
  const log = new SeqLog((e) => entries.push(e));
  const recOut: number[] = [];
  const rec = new Machine({ env: new LoggedDeterministicEnv((p, ic) => log.append(p, ic), opts), onOutput: (o) => { if (o.kind === 'console') recOut.push(o.byte); } });
  rec.loadElf(image);
  const r1 = await runMachine(rec, { batch, maxInstructions: 8_000_000 });
  log.append({ type: 'end', code: r1.code ?? 0 }, rec.icount);

  const repOut: number[] = [];
  const env = new ReplayEnv({ digest: (m) => m.digest() });
  const rep = new Machine({ env, onOutput: (o) => { if (o.kind === 'console') repOut.push(o.byte); } });
  rep.loadElf(image);
  for (const e of entries) env.push(e);
  const r2 = await runMachine(rep, { batch: Math.max(1, Math.floor(batch / 3)), untilIcount: rec.icount });
  return { rec, rep, r1, r2, recOut, repOut, entries };
}

describe('record and replay', () => {
  it('random interrupt, clock, entropy and console schedules replay to identical digests', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('timer', 'irqstress', 'seq-short'),
        fc.integer({ min: 5, max: 200 }),
        fc.integer({ min: 1, max: 0xffffffff }),
        fc.uint8Array({ maxLength: 8 }),
        fc.integer({ min: 100, max: 50_000 }),
        async (guest, ipt, seed, input, batch) => {
          const { rec, rep, r1, r2, recOut, repOut, entries } = await recordThenReplay(guest, { instructionsPerTick: ipt, seed, console: input }, batch);
          expect(entries.some((e) => e.type === 'timer' || e.type === 'value')).toBe(true);
          expect(rep.icount).toBe(rec.icount);
          expect(rep.digest()).toBe(rec.digest());
          expect(repOut).toEqual(recOut);
          expect(r2.reason === 'halt' ? 'halt' : 'until').toBe(r1.reason === 'halt' ? 'halt' : 'until');
        },
      ),
      { numRuns: 12 },
    );
  });

  it('stops a replay batch at a timer that waits behind a value read', async () => {
    // fast-check found it (seed 1818335428): a `seed` read inside instruction X+1, logged at
    // X, then a timer at X+1. The replay's batch budget looked only at the head of the log (the
    // read), ran past the timer, and diverged at the next mtime read.
    const { rec, rep, entries } = await recordThenReplay('seq-short', { instructionsPerTick: 23, seed: 1, console: new Uint8Array() }, 102);
    const i = entries.findIndex((e, k) => e.type === 'timer' && entries[k - 1]?.type === 'value' && entries[k - 1]!.icount + 1 === e.icount);
    expect(i).toBeGreaterThan(0);
    expect(rep.icount).toBe(rec.icount);
    expect(rep.digest()).toBe(rec.digest());
  });

  it('reports a divergence with seq, icount, expected and got', async () => {
    const { entries } = await recordThenReplay('timer', { seed: 5 }, 10_000);
    const i = entries.findIndex((e) => e.type === 'value' && e.kind === 'mtime');
    const bad = entries.map((e, k) => (k === i && e.type === 'value' ? { ...e, kind: 'seed' as const } : e));
    const env = new ReplayEnv();
    const m = new Machine({ env });
    m.loadElf(readFileSync(guestPath('timer')));
    for (const e of bad) env.push(e);
    const err = await runMachine(m, {}).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(DivergenceError);
    expect((err as DivergenceError).seq).toBe(bad[i]!.seq);
    expect((err as DivergenceError).message).toMatch(/expected seed read at icount \d+, got mtime read at icount \d+/);
  });
});

describe('ftvm record / replay (CLI)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-rr-'));

  it('replays the console output byte for byte with the same final digest', async () => {
    const elf = guestPath('seq-short');
    const logFile = join(dir, 'seq.log');
    const rec = await run('node', [ftvm, 'record', elf, '--log', logFile, '--snapshot-every', '2000000']);
    const rep = await run('node', [ftvm, 'replay', elf, '--log', logFile]);
    expect(rep.stdout).toBe(rec.stdout);
    expect(rec.stdout).toBe(readFileSync(join(root, 'guests/seq-short/expected.txt'), 'utf8'));
    const digest = (s: string) => /^digest [0-9a-f]{32} icount \d+$/m.exec(s)?.[0];
    expect(digest(rec.stderr)).toBeDefined();
    expect(digest(rep.stderr)).toBe(digest(rec.stderr));
  });

  it('seeks with --until through a snapshot to the same state as replaying from boot', async () => {
    const elf = guestPath('seq-short');
    const withSnaps = join(dir, 'snaps.log');
    await run('node', [ftvm, 'record', elf, '--log', withSnaps, '--snapshot-every', '1000000']);
    // The same log without its snapshots (kept only at icount 0) can only replay from boot.
    const { readLogFile, writeLogFile } = await import('../../runtime/log/file.js');
    const { header, entries } = await readLogFile(withSnaps);
    let first = true;
    const noSnaps = entries.filter((e) => e.type !== 'snapshot' || (first && !(first = false)));
    const renumbered = noSnaps.map((e, seq) => ({ ...e, seq }));
    const plain = join(dir, 'plain.log');
    await writeLogFile(plain, header, renumbered);
    const until = '12345678';
    const seek = await run('node', [ftvm, 'replay', elf, '--log', withSnaps, '--until', until]);
    const full = await run('node', [ftvm, 'replay', elf, '--log', plain, '--until', until]);
    expect(seek.stderr).toMatch(new RegExp(`icount ${until}`));
    expect(seek.stderr).toBe(full.stderr);
  });

  it('refuses a corrupt log with one clear line', async () => {
    const elf = guestPath('hello');
    const logFile = join(dir, 'hello.log');
    await run('node', [ftvm, 'record', elf, '--log', logFile]);
    const bytes = readFileSync(logFile);
    bytes[bytes.length - 3] ^= 0x40;
    writeFileSync(logFile, bytes);
    const err = await run('node', [ftvm, 'replay', elf, '--log', logFile]).then(() => undefined, (e: { code: number; stderr: string }) => e);
    expect(err?.code).toBe(2);
    expect(err?.stderr).toMatch(/^ftvm: .*hello\.log: log frame crc error/m);
    expect(err?.stderr).not.toMatch(/at .*\.js:\d+/);
  });
});
