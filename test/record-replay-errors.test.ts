// `ftvm record` / `ftvm replay` under operator errors (issue 11, items 5, 9 and 10): signals,
// a closed stdout, a full disk, a cut or corrupt log, `--until 0`. Each runs the built CLI as a
// direct child process and stops it by its PID.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { scanLogFile } from '../runtime/log/file.js';
import { decodeBlocks } from '../runtime/log/block.js';
import type { LogEntry } from '../runtime/log/entry.js';
import { Machine } from '../runtime/machine.js';
import { ReplayEnv } from '../runtime/env/replay.js';
import { guestPath } from '../runtime/guests.js';
import { elfOf } from './helpers/elf.js';

const root = new URL('../', import.meta.url).pathname;
const ftvm = join(root, 'bin/ftvm.js');
const seq = guestPath('seq'); // 2000 lines, about 645M instructions
const seqShort = guestPath('seq-short'); // 50 lines
const dir = mkdtempSync(join(tmpdir(), 'ftvm-rr-errors-'));

const DIGEST_LINE = /^digest [0-9a-f]{32} icount \d+$/m;
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;
const digestOf = (stderr: string): string | undefined => DIGEST_LINE.exec(stderr)?.[0];
const ftvmLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('ftvm: '));
const exitFor = (signal: NodeJS.Signals): number => 128 + osConstants.signals[signal];

interface Exited { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

const children = new Set<ChildProcess>();
afterEach(() => {
  // Leave nothing running, whatever a test did: each child is stopped by its own PID.
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) process.kill(c.pid, 'SIGKILL');
  children.clear();
});

/** Starts `ftvm ...args`; `onStdout` sees the child and everything it printed so far. */
function start(args: string[], onStdout?: (child: ChildProcess, stdout: string) => void): Promise<Exited> {
  const child = spawn(process.execPath, [ftvm, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
    onStdout?.(child, stdout);
  });
  // After the test closes its end of stdout, the stream may report the reset: not a failure.
  child.stdout!.on('error', () => {});
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

const ftvmSync = (...args: string[]) => {
  const r = spawnSync(process.execPath, [ftvm, ...args], { cwd: root, encoding: 'utf8' });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
};

/**
 * A whole recording of seq-short, its bytes, and its frames: blocks of entries (one per write,
 * file version 2), where each starts in the file and how many entries come before it.
 */
let whole: { log: string; stdout: string; stderr: string; bytes: Buffer; entries: LogEntry[]; frameAt: (fraction: number) => { at: number; n: number } };

beforeAll(async () => {
  const log = join(dir, 'whole.log');
  const rec = ftvmSync('record', seqShort, '--log', log);
  expect(rec.code).toBe(0);
  const scan = await scanLogFile(log);
  expect(scan.error).toBeUndefined();
  const bytes = readFileSync(log);
  // Each block: magic, then its length varint (the bytes after it).
  const starts: number[] = [];
  for (let at = scan.headerSize; at < bytes.length; ) {
    starts.push(at);
    let length = 0, mul = 1, p = at + 1;
    for (;;) { const b = bytes[p++]!; length += (b & 0x7f) * mul; mul *= 128; if (b < 0x80) break; }
    at = p + length;
  }
  expect(starts.length).toBeGreaterThan(4);
  /** The block boundary `fraction` of the way through the blocks, and the entries before it. */
  const frameAt = (fraction: number): { at: number; n: number } => {
    const at = starts[Math.max(1, Math.floor(starts.length * fraction))]!;
    return { at, n: decodeBlocks(bytes.subarray(0, at), scan.headerSize).entries.length };
  };
  whole = { log, stdout: rec.stdout, stderr: rec.stderr, bytes, entries: scan.entries, frameAt };
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ftvm record stopped by a signal', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('%s: the log gets its end record and replays what record printed', async (signal) => {
    const log = join(dir, `${signal}.log`);
    let sent = false;
    const rec = await start(['record', seq, '--log', log], (child, out) => {
      // Stop it mid-run, once it has printed something.
      if (!sent && out.split('\n').length > 20) {
        sent = true;
        process.kill(child.pid!, signal);
      }
    });
    expect(sent).toBe(true);
    expect({ code: rec.code, signal: rec.signal }).toEqual({ code: exitFor(signal), signal: null });
    expect(rec.stdout).not.toMatch(/seq done/);
    expect(rec.stderr).not.toMatch(STACK_FRAME);
    expect(ftvmLines(rec.stderr)).toEqual([expect.stringMatching(new RegExp(`^ftvm: ${signal}: stopped the guest at icount \\d+`))]);
    const recDigest = digestOf(rec.stderr);
    expect(recDigest).toBeDefined();

    const scan = await scanLogFile(log);
    expect(scan.error).toBeUndefined();
    const end = scan.entries[scan.entries.length - 1];
    expect(end).toMatchObject({ type: 'end', reason: 'stopped', code: exitFor(signal) });
    expect(recDigest).toMatch(new RegExp(`icount ${end!.icount}$`));

    const rep = ftvmSync('replay', seq, '--log', log);
    expect(rep.code).toBe(0);
    expect(rep.stdout).toBe(rec.stdout);
    expect(digestOf(rep.stderr)).toBe(recDigest);
  });
});

describe('a closed stdout (EPIPE)', () => {
  const closeAfterFirstChunk = (child: ChildProcess): void => {
    if (!child.stdout!.destroyed) child.stdout!.destroy();
  };

  it('record stops the guest quietly with 141 and leaves a complete log', async () => {
    const log = join(dir, 'epipe.log');
    const rec = await start(['record', seq, '--log', log], closeAfterFirstChunk);
    expect({ code: rec.code, signal: rec.signal }).toEqual({ code: exitFor('SIGPIPE'), signal: null });
    expect(rec.stderr).not.toMatch(STACK_FRAME);
    expect(ftvmLines(rec.stderr)).toEqual([]);
    const recDigest = digestOf(rec.stderr);
    expect(recDigest).toBeDefined();
    expect((await scanLogFile(log)).entries.at(-1)).toMatchObject({ type: 'end', reason: 'stopped' });

    const rep = ftvmSync('replay', seq, '--log', log);
    expect(rep.code).toBe(0);
    expect(rep.stdout.startsWith(rec.stdout)).toBe(true);
    expect(rep.stdout).not.toMatch(/seq done/);
    expect(digestOf(rep.stderr)).toBe(recDigest);
  });

  it('replay stops quietly with 141', async () => {
    const rep = await start(['replay', seqShort, '--log', whole.log], closeAfterFirstChunk);
    // seq-short may fit its whole output in the pipe before the test closes it; seq never does.
    const log = join(dir, 'seq-whole.log');
    expect(ftvmSync('record', seq, '--log', log, '--max-instructions', '200000000').code).toBe(0);
    const long = await start(['replay', seq, '--log', log], closeAfterFirstChunk);
    for (const r of [rep, long]) {
      expect(r.stderr).not.toMatch(STACK_FRAME);
      expect(ftvmLines(r.stderr)).toEqual(r === long ? [] : expect.any(Array));
    }
    expect({ code: long.code, signal: long.signal }).toEqual({ code: exitFor('SIGPIPE'), signal: null });
  });
});

describe('a write error on the log', () => {
  it('/dev/full: one line naming the file and the error, no usage, non-zero exit', () => {
    const rec = ftvmSync('record', seqShort, '--log', '/dev/full');
    expect(rec.code).not.toBe(0);
    expect(rec.stderr).not.toMatch(STACK_FRAME);
    expect(rec.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^ftvm: \/dev\/full: .*ENOSPC/)]);
    expect(rec.stdout).toBe('');
  });

  it('a full tmpfs: the guest stops at once with one line', async (ctx) => {
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]).status === 0;
    if (!mounted) ctx.skip('mount -t tmpfs is not permitted here');
    try {
      const log = join(mnt, 'full.log');
      const rec = await start(['record', seq, '--log', log]);
      expect(rec.code).toBe(1);
      expect(rec.stderr).not.toMatch(STACK_FRAME);
      const lines = rec.stderr.trimEnd().split('\n');
      expect(lines).toEqual([expect.stringMatching(/^ftvm: .*full\.log: cannot write the log: ENOSPC.*; stopped the guest at icount \d+$/)]);
      const stoppedAt = Number(/icount (\d+)$/.exec(lines[0]!)![1]);
      expect(rec.stdout).not.toMatch(/seq done/);
      // "At once": the guest ran at most a batch or two past what the full disk took.
      const scan = await scanLogFile(log);
      expect(scan.size).toBe(64 * 1024);
      const lastLogged = scan.entries.at(-1)!.icount;
      expect(stoppedAt).toBeGreaterThanOrEqual(lastLogged);
      expect(stoppedAt - lastLogged).toBeLessThan(3_000_000);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});

describe('replay of a log that lacks its end', () => {
  it('cut at a frame boundary: one line with seq, icount and file offset; --partial replays it', async () => {
    const { at, n: k } = whole.frameAt(1 / 2);
    const cut = join(dir, 'cut-boundary.log');
    writeFileSync(cut, whole.bytes.subarray(0, at));
    const last = whole.entries[k - 1]!;

    const rep = ftvmSync('replay', seqShort, '--log', cut);
    expect(rep.code).toBe(4);
    expect(rep.stdout).toBe('');
    expect(rep.stderr.trimEnd().split('\n')).toEqual([
      `ftvm: ${cut}: the log has no end record (was the recorder killed?): it stops at byte ${at}, a frame boundary, after seq ${last.seq}, icount ${last.icount}; --partial replays what is there`,
    ]);

    const partial = ftvmSync('replay', seqShort, '--log', cut, '--partial');
    expect(partial.code).toBe(0);
    expect(whole.stdout.startsWith(partial.stdout)).toBe(true);
    expect(partial.stdout.length).toBeLessThan(whole.stdout.length);
    expect(digestOf(partial.stderr)).toMatch(/^digest [0-9a-f]{32} icount \d+$/);
  });

  it('cut inside a frame: says where; --partial replays the frames before the cut', async () => {
    const { at, n: k } = whole.frameAt(1 / 3);
    const cut = join(dir, 'cut-inside.log');
    writeFileSync(cut, whole.bytes.subarray(0, at + 3));
    const last = whole.entries[k - 1]!;

    const rep = ftvmSync('replay', seqShort, '--log', cut);
    expect(rep.code).toBe(4);
    expect(rep.stderr.trimEnd().split('\n')).toEqual([
      expect.stringContaining(`it is cut inside a frame at byte ${at} of ${at + 3}, after seq ${last.seq}, icount ${last.icount}`),
    ]);
    const partial = ftvmSync('replay', seqShort, '--log', cut, '--partial');
    expect(partial.code).toBe(0);
    expect(whole.stdout.startsWith(partial.stdout)).toBe(true);
    expect(digestOf(partial.stderr)).toBeDefined();
  });

  it('a whole log replays the same with or without --partial', () => {
    for (const extra of [[], ['--partial']]) {
      const rep = ftvmSync('replay', seqShort, '--log', whole.log, ...extra);
      expect(rep.code).toBe(0);
      expect(rep.stdout).toBe(whole.stdout);
      expect(digestOf(rep.stderr)).toBe(digestOf(whole.stderr));
    }
  });
});

/** An ELF32 RISC-V executable holding `words` at 0x80000000 (as in test/cli-run.test.ts). */
describe('a guest fault', () => {
  it('ends the log with a fault end record; replay reaches the same state and says so', async () => {
    const elf = join(dir, 'fault.elf');
    writeFileSync(elf, elfOf([0x0000_0067])); // jr zero: fetch from 0, and mtvec is 0 too
    const log = join(dir, 'fault.log');
    const rec = ftvmSync('record', elf, '--log', log);
    expect(rec.code).toBe(1);
    expect(ftvmLines(rec.stderr)).toEqual([expect.stringMatching(/^ftvm: guest fault: .*no trap handler/)]);
    expect((await scanLogFile(log)).entries.at(-1)).toMatchObject({ type: 'end', reason: 'fault', code: 1 });
    const rep = ftvmSync('replay', elf, '--log', log);
    expect(rep.code).toBe(1);
    expect(digestOf(rep.stderr)).toBe(digestOf(rec.stderr));
    expect(ftvmLines(rep.stderr)).toEqual([expect.stringMatching(/^ftvm: the recording ended in a guest fault at icount \d+$/)]);
  });
});

describe('replay error lines', () => {
  it('a corrupt frame: its offset counts from the start of the file, and no usage line follows', async () => {
    const { at } = whole.frameAt(1 / 2);
    const bad = join(dir, 'corrupt.log');
    const bytes = Buffer.from(whole.bytes);
    bytes[at + 4]! ^= 0x10;
    writeFileSync(bad, bytes);
    for (const extra of [[], ['--partial']]) {
      const rep = ftvmSync('replay', seqShort, '--log', bad, ...extra);
      expect(rep.code).toBe(2);
      expect(rep.stdout).toBe('');
      expect(rep.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(new RegExp(`^ftvm: .*corrupt\\.log: log frame crc error at byte ${at}: `))]);
    }
  });

  it('a missing log: one line, no usage', () => {
    const rep = ftvmSync('replay', seqShort, '--log', join(dir, 'nope.log'));
    expect(rep.code).toBe(2);
    expect(rep.stderr).toBe(`ftvm: ${join(dir, 'nope.log')}: no such file\n`);
  });

  it('a --log that is a directory or in no directory: one line in plain words, exit 2', () => {
    let rec = ftvmSync('record', seqShort, '--log', dir);
    expect(rec.code).toBe(2);
    expect(rec.stderr.split('\n')[0]).toBe(`ftvm: ${dir}: is a directory, not a file`);
    rec = ftvmSync('record', seqShort, '--log', join(dir, 'nowhere', 'x.log'));
    expect(rec.code).toBe(2);
    expect(rec.stderr.split('\n')[0]).toBe(`ftvm: ${join(dir, 'nowhere', 'x.log')}: no such directory`);
  });

  it('--until 0 gives the state before the first instruction', () => {
    const rep = ftvmSync('replay', seqShort, '--log', whole.log, '--until', '0');
    expect(rep.code).toBe(0);
    expect(rep.stdout).toBe('');
    const boot = new Machine({ env: new ReplayEnv() });
    boot.loadElf(readFileSync(seqShort));
    expect(digestOf(rep.stderr)).toBe(`digest ${boot.digest()} icount 0`);
  });
});
