// A file arbiter's directory is the one both hosts share: a node never creates it (made up,
// it would give each host an arbiter of its own and let both replicas win). A path that can
// never be one (a file, /proc) is an operator error at start, one `ftvm:` line and exit 2,
// not a surprise at the first failover; a directory not there yet is said at start.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { expectOneLine, ftvm, killAll, startFtvm } from './helpers/cli-procs.js';

afterEach(killAll);

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
    it(`${name}: a file or /proc is one line and exit 2`, () => {
      for (const [spec, why] of [
        [`file:${aFile}`, /not a directory/],
        ['file:/proc/self', /pseudo filesystem/],
      ] as const) {
        const r = ftvm([...cmd, '--arbiter', spec]);
        expect(r.status, r.stderr).toBe(2);
        expectOneLine(r.stderr, new RegExp(`^ftvm: --arbiter ${spec.replace(/[/.]/g, '\\$&')}: .*${why.source}`));
        expect(r.stderr).not.toMatch(/listening|state "/);
      }
    });
  }

  it('primary: a directory not there yet is said once at start, is not created, and the node runs', async () => {
    const p = startFtvm(['primary', HELLO, '--listen', '127.0.0.1:0', '--key-file', key, '--arbiter', `file:${missing}`]);
    await p.waitErr(/primary listening/);
    p.child.kill('SIGTERM');
    expect(await p.exit).toBe('0');
    expectOneLine(p.err(), /^ftvm: --arbiter file:\S+not-mounted\/arbiter: no such directory yet \(never created here/);
    expect(existsSync(join(dir, 'not-mounted'))).toBe(false);
  });
});
