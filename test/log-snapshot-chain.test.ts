// Incremental snapshots of `ftvm record` (issue 14): a full snapshot, then deltas of the pages
// written since the previous one. Seeking through them must give the state a straight replay
// gives; a damaged one must give one `ftvm:` line.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Machine } from '../runtime/machine.js';
import { DeterministicEnv } from '../runtime/env/deterministic.js';
import { runMachine } from '../runtime/runner.js';
import { readLogFile, writeLogFile } from '../runtime/log/file.js';
import type { LogEntry } from '../runtime/log/entry.js';
import { guestPath } from '../runtime/guests.js';
import { chainPolicy, isDeltaSnapshot, resolveSnapshotChain, SnapshotChain, snapshotChainAt } from '../runtime/snapshot.js';
import { boot } from './helpers/boot.js';

const run = promisify(execFile);
const root = new URL('../', import.meta.url).pathname;
const ftvm = join(root, 'bin/ftvm.js');
const dir = mkdtempSync(join(tmpdir(), 'ftvm-snapchain-'));

describe('SnapshotChain (in process)', () => {
  // A step: run some instructions, let the host write a page (as DMA would), take a digest
  // (which sweeps the same dirty bits the chain reads), or snapshot.
  const step = fc.oneof(
    fc.record({ op: fc.constant('run' as const), n: fc.integer({ min: 1, max: 400_000 }) }),
    fc.record({ op: fc.constant('write' as const), page: fc.integer({ min: 0, max: 4095 }), word: fc.integer({ min: 0, max: 1023 }), value: fc.integer() }),
    fc.record({ op: fc.constant('undo' as const) }),
    fc.record({ op: fc.constant('digest' as const) }),
    fc.record({ op: fc.constant('snapshot' as const) }),
  );

  it('every snapshot of the chain resolves to the RAM and state the machine had when it was taken', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 5, maxLength: 40 }), fc.constantFrom(1, 3000, 1 << 30), fc.integer({ min: 1, max: 1000 }), async (steps, minChainBytes, seed) => {
        const { m } = boot('timer', seed);
        // A full snapshot after every delta, after a few, or never again.
        const chain = new SnapshotChain(m, { ...chainPolicy(1), minChainBytes, deltaBytesPerFull: 0 });
        const taken: { icount: number; data: Uint8Array; ram: Uint8Array; digest: string; type: 'snapshot' }[] = [];
        const take = (): void => {
          const data = chain.take();
          taken.push({ type: 'snapshot', icount: m.icount, data, ram: m.bus.ram.slice(), digest: m.digest() });
        };
        take();
        let lastWrite: { at: number; old: Uint8Array } | undefined;
        for (const s of steps) {
          if (s.op === 'run') await runMachine(m, { maxInstructions: s.n });
          else if (s.op === 'write') {
            const at = m.bus.ramBase + s.page * 4096 + s.word * 4;
            lastWrite = { at, old: m.bus.readRam(at, 4).slice() };
            m.bus.writeRam(at, new Uint8Array(new Int32Array([s.value]).buffer));
          } else if (s.op === 'undo' && lastWrite) {
            // Written, yet the same as at the previous snapshot: a delta may leave it out.
            m.bus.writeRam(lastWrite.at, lastWrite.old);
          } else if (s.op === 'digest') m.digest();
          else if (s.op === 'snapshot') take();
        }
        take();
        expect(taken.some((t) => isDeltaSnapshot(t.data))).toBe(true);
        for (let i = 0; i < taken.length; i++) {
          const snap = resolveSnapshotChain(snapshotChainAt(taken, i));
          expect(snap.icount).toBe(taken[i]!.icount);
          expect(Buffer.compare(snap.ram, taken[i]!.ram)).toBe(0);
          const other = new Machine({ env: new DeterministicEnv({ seed }) });
          other.restore(snap);
          expect(other.digest()).toBe(taken[i]!.digest);
        }
      }),
      { numRuns: 12 },
    );
  }, 120_000);

  it('a chain without its full snapshot, out of order, or damaged is refused with a reason', async () => {
    const { m } = boot('timer');
    const chain = new SnapshotChain(m, chainPolicy(1));
    const snaps = [{ icount: 0, data: chain.take() }];
    for (let i = 0; i < 3; i++) {
      await runMachine(m, { maxInstructions: 20_000 });
      snaps.push({ icount: m.icount, data: chain.take() });
    }
    expect(snaps.slice(1).every((s) => isDeltaSnapshot(s.data))).toBe(true);
    expect(() => resolveSnapshotChain(snaps.slice(1))).toThrow(/incremental and the full one it builds on is missing/);
    expect(() => resolveSnapshotChain([snaps[0]!, snaps[2]!])).toThrow(/builds on another snapshot than the one at icount/);
    const cut = { icount: snaps[3]!.icount, data: snaps[3]!.data.subarray(0, snaps[3]!.data.length - 9) };
    expect(() => resolveSnapshotChain([...snaps.slice(0, 3), cut])).toThrow(/does not inflate|truncated/);
    expect(resolveSnapshotChain(snaps).icount).toBe(snaps[3]!.icount);
  });
});

describe('ftvm record / replay --until across incremental snapshots', () => {
  const elf = guestPath('seq-short');
  const logFile = join(dir, 'snaps.log');
  const plainFile = join(dir, 'plain.log');
  let recorded: { entries: LogEntry[]; header: Awaited<ReturnType<typeof readLogFile>>['header'] } | undefined;

  async function recordOnce(): Promise<NonNullable<typeof recorded>> {
    if (recorded) return recorded;
    await run('node', [ftvm, 'record', elf, '--log', logFile, '--snapshot-every', '500000']);
    const { header, entries } = await readLogFile(logFile);
    // The same log with only its first (full) snapshot can only replay from boot.
    let first = true;
    const noSnaps = entries.filter((e) => e.type !== 'snapshot' || (first && !(first = false))).map((e, seq) => ({ ...e, seq }));
    await writeLogFile(plainFile, header, noSnaps);
    return (recorded = { header, entries });
  }

  it('seeking lands in the state replaying from boot reaches, at any target', async () => {
    const { entries } = await recordOnce();
    const snaps = entries.filter((e) => e.type === 'snapshot');
    expect(snaps.filter((e) => isDeltaSnapshot(e.data)).length).toBeGreaterThan(3);
    const end = entries[entries.length - 1]!.icount;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: end }), async (until) => {
        const seek = await run('node', [ftvm, 'replay', elf, '--log', logFile, '--until', String(until)]);
        const straight = await run('node', [ftvm, 'replay', elf, '--log', plainFile, '--until', String(until)]);
        expect(seek.stderr).toMatch(new RegExp(`^digest [0-9a-f]{32} icount ${until}$`, 'm'));
        expect(seek.stderr).toBe(straight.stderr);
      }),
      { numRuns: 4 },
    );
  }, 120_000);

  /**
   * `entries[i]`'s data with one byte flipped (xor 0x5a), in its middle or the first byte after
   * it whose flip changes what the chain decodes to. Not every flip does: most of a delta is
   * the XOR of unchanged words, zeros, which deflate codes as 258-byte matches, and a flip in a
   * match's distance bits that still points at zeros inflates to the very same bytes (adler32
   * and all), e.g. distance 258 -> 408. About 3 % of the positions are such: that snapshot is
   * intact, and replay rightly restores it. A flip that is accepted must decode to exactly the
   * state of the undamaged chain.
   */
  function flipDamaging(entries: LogEntry[], i: number): Uint8Array {
    const bad = entries[i]! as LogEntry & { type: 'snapshot' };
    const chain = snapshotChainAt(entries, i);
    const good = resolveSnapshotChain(chain);
    for (let at = Math.floor(bad.data.length / 2); at < bad.data.length; at++) {
      const data = bad.data.slice();
      data[at]! ^= 0x5a;
      let snap;
      try {
        snap = resolveSnapshotChain(chain.map((e) => (e === bad ? { ...e, data } : e)));
      } catch {
        return data;
      }
      expect(Buffer.compare(snap.ram, good.ram)).toBe(0);
      expect({ ...snap, ram: undefined }).toEqual({ ...good, ram: undefined });
    }
    throw new Error(`no byte flip in the second half of the snapshot at seq ${bad.seq} damages it`);
  }

  for (const damage of ['corrupt', 'truncated'] as const) {
    it(`a ${damage} incremental snapshot: one ftvm: line naming it, exit 2`, async () => {
      const { header, entries } = await recordOnce();
      const i = entries.findIndex((e, k) => k > entries.length / 2 && e.type === 'snapshot' && isDeltaSnapshot(e.data));
      const bad = entries[i]! as LogEntry & { type: 'snapshot' };
      const data = damage === 'corrupt' ? flipDamaging(entries, i) : bad.data.subarray(0, bad.data.length - 7);
      const file = join(dir, `${damage}.log`);
      // Written as valid frames: the log's own CRCs pass, the snapshot inside does not.
      await writeLogFile(file, header, entries.map((e, k) => (k === i ? { ...bad, data } : e)));
      const out = await run('node', [ftvm, 'replay', elf, '--log', file, '--until', String(bad.icount + 1)])
        .then(() => undefined, (e: { code: number; stderr: string }) => e);
      expect(out?.code).toBe(2);
      expect(out?.stderr.trimEnd().split('\n')).toEqual([
        expect.stringMatching(new RegExp(`^ftvm: .*${damage}\\.log: the snapshot at seq ${bad.seq}, icount ${bad.icount}: `)),
      ]);
    }, 60_000);
  }
});
