// virtio-blk on ftvm: the blkcheck guest must print exactly its QEMU golden on a fresh,
// all-zero 1 MiB disk (guests/blkcheck/golden.sh), on a file disk and on an NBD export, and a
// recorded run must replay to the same digest with no disk at all.
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Machine } from '../runtime/machine.js';
import { LiveEnv } from '../runtime/env/live.js';
import { RecordingEnv } from '../runtime/env/recording.js';
import { ReplayEnv } from '../runtime/env/replay.js';
import { runMachine } from '../runtime/runner.js';
import { FileDisk } from '../runtime/io/disk-file.js';
import { NbdDisk } from '../runtime/io/disk-nbd.js';
import type { DiskBackend } from '../runtime/io/backend.js';
import type { LogEntry, LogPayload } from '../runtime/log/entry.js';
import type { Env } from '../runtime/env/env.js';
import type { Output } from '../runtime/types.js';
import { startNbdServer } from './nbd-server.js';

const guests = new URL('../guests/', import.meta.url);
const blkcheck = readFileSync(new URL('blkcheck/blkcheck.elf', guests));
const expected = readFileSync(new URL('blkcheck/expected.txt', guests), 'latin1');
const expectedExit = Number(readFileSync(new URL('blkcheck/expected-exit', guests), 'utf8').trim());

let dir: string;
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'ftvm-blk-')); });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function freshImage(name: string): string {
  const p = join(dir, name);
  writeFileSync(p, '');
  truncateSync(p, 1 << 20);
  return p;
}

/** Run blkcheck the way `ftvm run` does: released outputs go straight to the backends. */
async function runBlkcheck(env: Env, backend: DiskBackend | undefined, sectors = 2048) {
  let text = '';
  const outputs: Output[] = [];
  const m: Machine = new Machine({
    env,
    disk: { sectors, ...(backend ? { backend } : {}) },
    onOutput: (o) => {
      outputs.push(o);
      if (o.kind === 'console') text += String.fromCharCode(o.byte);
      else m.io!.execute(o);
    },
  });
  m.loadElf(blkcheck);
  const outcome = await runMachine(m, { maxInstructions: 500_000_000 });
  return { m, text, outcome, outputs };
}

describe('blkcheck guest on ftvm', () => {
  it('matches its QEMU golden on a file disk, and the disk holds what it wrote', async () => {
    const image = freshImage('file.img');
    const disk = await FileDisk.open(image);
    const { text, outcome, outputs, m } = await runBlkcheck(new LiveEnv(), disk);
    await m.io!.close();
    expect(text).toBe(expected);
    expect(outcome.reason).toBe('halt');
    expect(outcome.code).toBe(expectedExit);
    // Every sector the guest wrote is in the file, last write wins.
    const bytes = new Uint8Array(readFileSync(image));
    const want = new Uint8Array(1 << 20);
    for (const o of outputs) if (o.kind === 'disk-write' && !o.flush) want.set(o.data, o.sector * 512);
    expect(Buffer.compare(bytes, want)).toBe(0);
    expect(outputs.some((o) => o.kind === 'disk-write' && o.flush)).toBe(true);
  });

  it('matches its QEMU golden on an NBD export served by nbd-server', async () => {
    const image = freshImage('nbd.img');
    const server = await startNbdServer(dir, image);
    try {
      const disk = await NbdDisk.connect({ host: '127.0.0.1', port: server.port, export: 'disk' });
      const { text, outcome, m } = await runBlkcheck(new LiveEnv(), disk);
      await m.io!.close();
      expect(text).toBe(expected);
      expect(outcome.code).toBe(expectedExit);
    } finally {
      await server.stop();
    }
  });

  it('records disk-read and disk-done inputs, and replays them without any disk to the same digest', async () => {
    const log: LogEntry[] = [];
    const sink = (p: LogPayload, icount: number) => log.push({ ...p, seq: log.length, icount } as LogEntry);
    const disk = await FileDisk.open(freshImage('rec.img'));
    const rec = await runBlkcheck(new RecordingEnv(sink), disk);
    await rec.m.io!.close();
    expect(rec.text).toBe(expected);
    const kinds = new Set(log.map((e) => e.type));
    expect(kinds.has('disk-read')).toBe(true);
    expect(kinds.has('disk-done')).toBe(true);
    log.push({ seq: log.length, icount: rec.m.icount, type: 'end', code: rec.outcome.code ?? 0 });

    const env = new ReplayEnv({ digest: (mm) => mm.digest() });
    for (const e of log) env.push(e);
    const rep = await runBlkcheck(env, undefined);
    expect(rep.text).toBe(expected);
    expect(rep.m.icount).toBe(rec.m.icount);
    expect(rep.m.digest()).toBe(rec.m.digest());
    // The backup saw the same writes as outputs, at the same icounts.
    const writes = (os: Output[]) => os.filter((o) => o.kind === 'disk-write').map((o) => JSON.stringify({ ...o, data: Buffer.from((o as { data: Uint8Array }).data).toString('hex') }));
    expect(writes(rep.outputs)).toEqual(writes(rec.outputs));
  });

  // DESIGN §3 go-live: a backup that replayed up to the last entry it got has requests its
  // device saw with no completion in the log; live, it re-issues them on the shared disk.
  for (const cut of ['a write', 'a read'] as const) {
    it(`goes live with ${cut} pending, re-issues it on the shared disk, and finishes the golden run`, async () => {
      const image = freshImage(`golive-${cut === 'a write' ? 'w' : 'r'}.img`);
      const log: LogEntry[] = [];
      const sink = (p: LogPayload, icount: number) => log.push({ ...p, seq: log.length, icount } as LogEntry);
      const disk = await FileDisk.open(image);
      const rec = await runBlkcheck(new RecordingEnv(sink), disk);
      expect(rec.text).toBe(expected);
      // The write outputs the primary produced, by tag, to tell a write's disk-done from a read's.
      const writeTags = new Set(rec.outputs.flatMap((o) => (o.kind === 'disk-write' && !o.flush ? [o.tag] : [])));
      const at = cut === 'a write'
        ? log.findIndex((e) => e.type === 'disk-done' && writeTags.has(e.tag))
        : log.findIndex((e, i) => e.type === 'disk-read' && i > log.length / 2);
      expect(at).toBeGreaterThan(0);
      // The primary died having logged only what precedes the completion.
      const env = new ReplayEnv({ digest: (mm) => mm.digest() });
      for (const e of log.slice(0, at)) env.push(e);
      // Its last heartbeat let the backup run up to the instruction where the completion landed.
      env.push({ seq: at, icount: log[at]!.icount, type: 'progress', released: 0 });
      let text = '';
      const m: Machine = new Machine({
        env,
        disk: { sectors: 2048 },
        onOutput: (o) => {
          if (o.kind === 'console') text += String.fromCharCode(o.byte);
          else if (m.env !== env) m.io!.execute(o);
        },
      });
      m.loadElf(blkcheck);
      // Replay everything received, as the backup node's drain does (runMachine would sleep at the horizon).
      for (let steps = 0; !env.drained(m); steps++) {
        expect(steps).toBeLessThan(10_000);
        m.step(1_000_000);
      }
      expect(m.icount).toBe(log[at]!.icount);
      const pending = m.pendingIo();
      expect(pending).toHaveLength(1);
      expect(pending[0]!.kind).toBe(cut === 'a write' ? 'write' : 'read');
      // Go live: a live env at the guest's clock, the shared disk attached, pending I/O re-issued.
      // The dead primary's disk is closed first: one writer per disk (DESIGN §3) refuses a
      // second open of a locked image.
      await rec.m.io!.close();
      m.env = new LiveEnv({ mtimeAt: env.lastMtime });
      m.io!.attach({ disk: await FileDisk.open(image) });
      const live = await runMachine(m, { maxInstructions: 500_000_000 });
      await m.io!.close();
      expect(live.reason).toBe('halt');
      expect(text).toBe(expected);
      expect(m.pendingIo()).toEqual([]);
    });
  }

  it('fails the guest\'s requests with IOERR, not the host, when the disk dies', async () => {
    const dead: DiskBackend = {
      sectors: 2048, name: 'dead',
      read: () => Promise.reject(new Error('gone')),
      write: () => Promise.reject(new Error('gone')),
      flush: () => Promise.reject(new Error('gone')),
      close: () => Promise.resolve(),
    };
    const { text, outcome, m } = await runBlkcheck(new LiveEnv(), dead);
    expect(outcome.reason).toBe('halt');
    expect(text).toMatch(/write {4}0\+1 {2}gen 1 +FAIL/);
    expect(text).toMatch(/blkcheck: FAIL/);
    expect(m.io!.stats.diskErrors).toBeGreaterThan(0);
  });
});
