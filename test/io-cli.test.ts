// `ftvm run|record|replay --disk SPEC --net udp:H:G` end to end, through the built CLI:
// the dns guest serves dig-style clients from a file disk, and blkcheck recorded on a disk
// replays to the same digest with no disk at all (the log carries the device shape).
import { spawn, spawnSync } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { copyFileSync, existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeUdpPort } from './helpers/net.js';

const root = new URL('../', import.meta.url).pathname;
const ftvm = join(root, 'bin/ftvm.js');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ftvm-io-cli-'));
  // bin/ftvm.js runs the compiled CLI, built once by test/global-setup.ts.
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ftvm CLI with --disk and --net', () => {
  it('runs the dns guest from a file disk and answers a resolver on the forwarded port', async () => {
    const disk = join(dir, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), disk);
    const port = await freeUdpPort();
    const child = spawn(process.execPath, [ftvm, 'run', 'guests/dns/dns.elf', '--disk', `file:${disk}`, '--net', `udp:${port}:53`, '--stats'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    try {
      const deadline = Date.now() + 20_000;
      while (!out.includes('dns: serving 13 records\n')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no dns: ${out} ${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const r = new Resolver({ timeout: 1000, tries: 3 });
      r.setServers([`127.0.0.1:${port}`]);
      expect(await r.resolve4('ns2.example.test')).toEqual(['192.0.2.54']);
      await expect(r.resolve4('missing.example.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(130);
    expect(err).toMatch(/"framesIn":[1-9]/);
  });

  it('records blkcheck on a disk and replays it without one to the same digest', () => {
    const disk = join(dir, 'blk.img');
    writeFileSync(disk, '');
    truncateSync(disk, 1 << 20);
    const log = join(dir, 'blk.log');
    const rec = spawnSync(process.execPath, [ftvm, 'record', 'guests/blkcheck/blkcheck.elf', '--disk', disk, '--log', log], { cwd: root, encoding: 'utf8' });
    expect(rec.stdout).toMatch(/blkcheck: PASS\n$/);
    expect(rec.status).toBe(0);
    const rep = spawnSync(process.execPath, [ftvm, 'replay', 'guests/blkcheck/blkcheck.elf', '--log', log], { cwd: root, encoding: 'utf8' });
    expect(rep.stdout).toBe(rec.stdout);
    expect(rep.status).toBe(0);
    const digest = (s: string) => /digest \S+ icount \d+/.exec(s)?.[0];
    expect(digest(rep.stderr)).toBeDefined();
    expect(digest(rep.stderr)).toBe(digest(rec.stderr));
  });

  it('reports bad specs and unreachable disks in one line, without a stack trace', () => {
    const bad = (args: string[]) => spawnSync(process.execPath, [ftvm, 'run', 'guests/hello/hello.elf', ...args], { cwd: root, encoding: 'utf8' });
    let r = bad(['--net', 'tcp:1:2']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^ftvm: --net tcp:1:2: expected udp:/);
    r = bad(['--disk', join(dir, 'nope.img')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^ftvm: .*nope\.img: no such file$/m);
    // A server out of reach is a failure at run time (README: exit 1), not a bad flag.
    r = bad(['--disk', 'nbd://127.0.0.1:1/x']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^ftvm: nbd:\/\/127\.0\.0\.1:1\/x: .*ECONNREFUSED/);
    r = bad(['--deterministic', '--disk', 'x.img']);
    expect(r.status).toBe(2);
    // hello with no devices is unchanged.
    r = bad([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/hello/i);
  });
});
