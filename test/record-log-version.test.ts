// `ftvm replay` across log file versions: a version-1 log (a frame per entry, as written
// before issue 14's third pass) replays as it did; a version this build does not know is
// refused with one `ftvm:` line and exit 2. The CLI runs as a direct child process.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Encoder } from '../runtime/log/codec.js';
import { encodeLogFileHeader, scanLogFile } from '../runtime/log/file.js';
import { guestPath } from '../runtime/guests.js';

const root = new URL('../', import.meta.url).pathname;
const ftvm = join(root, 'bin/ftvm.js');
const seqShort = guestPath('seq-short');
const dir = mkdtempSync(join(tmpdir(), 'ftvm-log-version-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (...args: string[]) => {
  const r = spawnSync(process.execPath, [ftvm, ...args], { cwd: root, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};
const digestOf = (stderr: string): string | undefined => /^digest [0-9a-f]{32} icount \d+$/m.exec(stderr)?.[0];

describe('log file versions in ftvm replay', () => {
  const log = join(dir, 'v2.log');
  const rec = run('record', seqShort, '--log', log);

  it('record writes version 2; the same entries as a version-1 file replay the same', async () => {
    expect(rec.code).toBe(0);
    const scan = await scanLogFile(log);
    expect(scan.header.version).toBe(2);
    expect(scan.error).toBeUndefined();
    const v1 = join(dir, 'v1.log');
    const enc = new Encoder();
    writeFileSync(v1, Buffer.concat([encodeLogFileHeader(scan.header, 1), ...scan.entries.map((e) => enc.encode(e))]));
    // A frame per entry is larger: the blocks are what made the log smaller.
    expect(readFileSync(v1).length).toBeGreaterThan(readFileSync(log).length);
    for (const file of [log, v1]) {
      const rep = run('replay', seqShort, '--log', file);
      expect(rep.code).toBe(0);
      expect(rep.stdout).toBe(rec.stdout);
      expect(digestOf(rep.stderr)).toBe(digestOf(rec.stderr));
    }
    const seek = run('replay', seqShort, '--log', v1, '--until', '8000000');
    expect(seek.code).toBe(0);
    expect(digestOf(seek.stderr)).toBe(digestOf(run('replay', seqShort, '--log', log, '--until', '8000000').stderr));
  });

  it('a log of another version: one ftvm: line, exit 2', () => {
    const bytes = Buffer.from(readFileSync(log));
    const header = encodeLogFileHeader({ imageDigest: 'x', memorySize: 1 }, 3);
    const v3 = join(dir, 'v3.log');
    writeFileSync(v3, Buffer.concat([header, bytes.subarray(header.length)]));
    const rep = run('replay', seqShort, '--log', v3);
    expect(rep.code).toBe(2);
    expect(rep.stdout).toBe('');
    expect(rep.stderr).toBe(`ftvm: ${v3}: log frame version error at byte 0: log file header: version 3, this ftvm reads versions 1 and 2\n`);
  });
});
