// One run of each operator-error fault of `npm run faults` (issue 11; DESIGN §3 Identity,
// Membership): the pair as processes on the seq-mid guest, and the checker's verdict.
import { Resolver } from 'node:dns/promises';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT_REFUSED, runOnce, type MainFault, type RunResult, type RunSpec } from '../runtime/faults/harness.js';
import { killAll, startFtvm } from './helpers/cli-procs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const guest = (name: string): string => join(root, `guests/${name}/${name}.elf`);
// Suspicion well above the stalls a loaded CI machine causes: a spurious failover before the
// operator error would change the scenario.
const SUSPECT_MS = 1000;
const dirs: string[] = [];
afterAll(() => {
  killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let id = 0;
async function run(fault: MainFault, more: Partial<RunSpec> = {}): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), `ftvm-op-${fault}-`));
  dirs.push(dir);
  const r = await runOnce({
    id: ++id, cli: join(root, 'bin/ftvm.js'), guest: guest('seq-mid'), dir, fault, atMs: 400, stalls: [],
    timeoutMs: 40_000, suspectMs: SUSPECT_MS, otherGuest: guest('hello'), otherMemMiB: 32,
    previousGuest: guest('seq-short'), previousAtMs: 100, ...more,
  });
  // On a failure, the processes' stderr says why.
  const said = (): string => readdirSync(dir).filter((f) => f.endsWith('stderr.txt')).map((f) => `${f}:\n${existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : ''}`).join('\n');
  expect(r.check.errors, said()).toEqual([]);
  expect(r.check.ok).toBe(true);
  expect(r.struck, said()).toBe(true);
  if (fault !== 'nbd-restart') expect(r.check.lines).toBe(more.guest === guest('seq') ? 2000 : 300);
  return r;
}

describe('operator errors against a pair of processes', () => {
  // NOTE a third backup is a new process: under load it may need a second to start and
  // connect, longer than all of seq-mid; on seq the pair is surely still running.
  it('refuses a third backup (exit 5); the pair runs on', async () => {
    const r = await run('extra-backup', { guest: guest('seq') });
    expect(r.extras.map((x) => x.exit)).toEqual([String(EXIT_REFUSED)]);
    expect(r.exit).toEqual({ primary: '0', backup: '0' });
    expect(r.claims).toEqual({});
  });

  it('refuses a third backup with the wrong key', async () => {
    const r = await run('extra-backup-wrong-key', { guest: guest('seq') });
    expect(r.extras.map((x) => x.exit)).toEqual([String(EXIT_REFUSED)]);
    expect(r.exit).toEqual({ primary: '0', backup: '0' });
  });

  it('refuses a backup of another image, then takes the right one', async () => {
    const r = await run('other-image');
    expect(r.extras.map((x) => x.exit)).toEqual([String(EXIT_REFUSED)]);
    expect(r.exit).toEqual({ primary: '0', backup: '0' });
  });

  it('refuses a backup of another memory size, then takes the right one', async () => {
    const r = await run('other-mem');
    expect(r.extras.map((x) => x.exit)).toEqual([String(EXIT_REFUSED)]);
  });

  it('keeps listening through stray connections before its backup', async () => {
    const r = await run('stray', { strays: ['http', 'bytes', 'wrong-key'] });
    expect(r.exit).toEqual({ primary: '0', backup: '0' });
  });

  it('a rerun on the same key and arbiter is a new instance: an old claim never halts it', async () => {
    // Early: the seq guest now ends about 0.5 s after attach on a quiet host.
    const r = await run('rerun', { atMs: 250 });
    expect(r.previous?.claims).toEqual({ 1: 'backup' });
    expect(r.pairId).not.toBe(r.previous?.pairId);
    expect(r.exit).toEqual({ primary: '0', backup: 'SIGKILL' });
    expect(r.claims).toEqual({ 1: 'primary' });
  });

  it('SIGTERM of the primary: the backup takes over', async () => {
    const r = await run('sigterm-primary');
    expect(['0', '6']).toContain(r.exit.primary);
    expect(r.exit.backup).toBe('0');
    expect(r.claims).toEqual({ 1: 'backup' });
  });

  it('SIGTERM of the backup: the primary goes on alone', async () => {
    const r = await run('sigterm-backup');
    expect(r.exit.primary).toBe('0');
    expect(['0', '6']).toContain(r.exit.backup);
    expect(r.claims).toEqual({ 1: 'primary' });
  });

  it('the file arbiter out of reach at a claim: the backup says so, waits, then wins', async () => {
    // Down longer than suspicion (1 s) plus confirmation (0.5 s), so the claim meets it. On
    // seq, not seq-mid: under a loaded suite seq-mid could end before the kill at 400 ms, and
    // a backup that saw the log's end claims nothing.
    const r = await run('arbiter-down-file', { arbiterDownMs: 2500, guest: guest('seq') });
    expect(r.exit).toEqual({ primary: 'SIGKILL', backup: '0' });
    expect(r.claims).toEqual({ 1: 'backup' });
  });

  it('the kv guest keeps every acknowledged PUT across an nbd-server restart', async () => {
    const r = await run('nbd-restart', { kvGuest: guest('kv'), atMs: 500, nbdDownMs: 700 });
    expect(r.check.lines).toBeGreaterThan(0);
  });
});

describe('operator errors against a pair with a disk and a service port (issue 13)', () => {
  it('a backup of another image, or one too many, is refused (exit 5) without touching the disk or the port; the pair serves on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-op-io-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'key'), '5a'.repeat(32));
    const disk = join(dir, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), disk);
    mkdirSync(join(dir, 'arbiter'));
    const flags = ['--key-file', join(dir, 'key'), '--arbiter', `file:${join(dir, 'arbiter')}`, '--suspect-ms', String(SUSPECT_MS), '--disk', `file:${disk}`];
    const primary = startFtvm(['primary', guest('dns'), '--listen', '127.0.0.1:0', ...flags, '--net', 'udp:0:53']);
    const service = (await primary.waitErr(/primary forwarding udp 127\.0\.0\.1:(\d+) -> guest port 53/))[1]!;
    const listen = (await primary.waitErr(/primary listening 127\.0\.0\.1:(\d+) /))[1]!;
    const backupOf = (elf: string, how = '--connect'): ReturnType<typeof startFtvm> =>
      startFtvm(['backup', elf, how, `127.0.0.1:${listen}`, ...flags, '--net', `udp:${service}:53`]);

    // Another image with the same disk and port: turned away before it runs or opens anything.
    const other = backupOf(guest('kv'));
    expect(await other.exit, other.err()).toBe(String(EXIT_REFUSED));
    const lines = other.err().split('\n').filter((l) => l.startsWith('ftvm:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^ftvm: refused: .*image/);
    expect(other.err()).not.toMatch(/took over|forwarding/);
    expect(primary.err()).toMatch(/primary refused .*image/);

    const backup = backupOf(guest('dns'));
    await primary.waitErr(/primary backup attached/);
    const r = new Resolver({ timeout: 1000, tries: 5 });
    r.setServers([`127.0.0.1:${service}`]);
    expect(await r.resolve4('ns2.example.test')).toEqual(['192.0.2.54']);

    // A third replica, joining a pair that is protected: busy.
    const third = backupOf(guest('dns'), '--join');
    expect(await third.exit, third.err()).toBe(String(EXIT_REFUSED));
    expect(third.err().split('\n').filter((l) => l.startsWith('ftvm:'))).toEqual([expect.stringMatching(/^ftvm: refused: /)]);
    // Nobody claimed anything: the pair runs on, protected, and still answers.
    expect(readdirSync(join(dir, 'arbiter'))).toEqual([]);
    expect(await r.resolve4('www.example.test')).toEqual(['192.0.2.80', '192.0.2.81']);

    // A clean end: the backup stopped, the primary serves alone, then stops with exit 0.
    backup.child.kill('SIGTERM');
    expect(await backup.exit).toBe('0');
    await primary.waitErr(/primary state "alone"|alone: a new backup may join/);
    primary.child.kill('SIGTERM');
    expect(await primary.exit, primary.err()).toBe('0');
    expect(primary.err()).toMatch(/disk file:.*zone\.img flushed/);
  }, 60_000);
});
