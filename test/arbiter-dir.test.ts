// A file arbiter's directory is the one both hosts share: a node never creates it, and one
// that is missing, not a directory or on a pseudo filesystem is an operator error at start
// (one `ftvm:` line, exit 2), not a surprise at the first failover when the claim cannot be
// placed. Made up, it would give each host its own arbiter and let both replicas win.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { expectOneLine, ftvm } from './helpers/cli-procs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const HELLO = join(root, 'guests/hello/hello.elf');
const dir = mkdtempSync(join(tmpdir(), 'ftvm-arbiter-dir-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const key = join(dir, 'key');
writeFileSync(key, '00112233445566778899aabbccddeeff');
const aFile = join(dir, 'plain-file');
writeFileSync(aFile, 'x');
const missing = join(dir, 'not-mounted', 'arbiter');

const commands: [string, string[]][] = [
  ['primary', ['primary', HELLO, '--listen', '127.0.0.1:0', '--key-file', key]],
  ['backup', ['backup', HELLO, '--connect', '127.0.0.1:1', '--key-file', key]],
  ['pair', ['pair', HELLO]],
];

describe('--arbiter file:DIR is checked at start', () => {
  for (const [name, cmd] of commands) {
    it(`${name}: a missing directory, a file or /proc is one line, exit 2, and nothing is created`, () => {
      for (const [spec, why] of [
        [`file:${missing}`, /no such directory .*never created/],
        [`file:${aFile}`, /not a directory/],
        ['file:/proc/self', /pseudo filesystem/],
      ] as const) {
        const r = ftvm([...cmd, '--arbiter', spec]);
        expect(r.status, r.stderr).toBe(2);
        expectOneLine(r.stderr, new RegExp(`^ftvm: --arbiter ${spec.replace(/[/.]/g, '\\$&')}: .*${why.source}`));
        expect(r.stderr).not.toMatch(/listening|state "/);
      }
      expect(existsSync(join(dir, 'not-mounted'))).toBe(false);
    });
  }
});
