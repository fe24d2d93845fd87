// Operator errors of the I/O pair across processes (issue 13; docs/RELIABILITY.md "Operator
// errors of the I/O pair"): the dns and kv guests as `ftvm primary`, `backup` and `pair`
// children with a disk and a UDP forward, given what operators get wrong. Each error must be
// one `ftvm:` line with its exit code, and lose nothing: a backup that would go live on another
// disk, without the forwards or without the hook that moves the service address is refused
// (DESIGN §3 Membership, One writer per disk, The service moves with the live replica).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, cli, expectOneLine, ftvm, killAll, root, startFtvm, type Proc } from './helpers/cli-procs.js';
import { startNbdServer, type NbdServer } from './nbd-server.js';
import { servicePort } from '../runtime/faults/service-port.js';
import { KvClient, KvStatus } from '../runtime/clients/kv-client.js';
import { KV_DISK_BYTES } from '../runtime/demo/kv-load.js';
import { zeroedDisk } from '../runtime/demo/dns-load.js';

const DNS = join(root, 'guests/dns/dns.elf');
const KV = join(root, 'guests/kv/kv.elf');
const SUSPECT_MS = '600';
const dirs: string[] = [];
const servers: NbdServer[] = [];
afterAll(async () => {
  killAll();
  for (const s of servers) await s.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fresh(): string {
  const d = mkdtempSync(join(tmpdir(), 'ftvm-opio-'));
  dirs.push(d);
  writeFileSync(join(d, 'key'), 'cd'.repeat(32));
  return d;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const claims = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.claim'));

/** A primary waiting for its backup, with `disk` and a forward of a free port to `guestPort`. */
async function startPrimary(d: string, elf: string, disk: string, guestPort: number, extra: string[] = []): Promise<{ p: Proc; listen: number; port: number }> {
  const p = startFtvm(['primary', elf, '--listen', '127.0.0.1:0', '--key-file', join(d, 'key'), '--arbiter', `file:${d}`, '--suspect-ms', SUSPECT_MS,
    '--disk', disk, '--net', `udp:127.0.0.1:${await servicePort()}:${guestPort}`, ...extra]);
  const fwd = await p.waitErr(/primary forwarding udp 127\.0\.0\.1:(\d+) -> guest port/);
  const listening = await p.waitErr(/primary listening 127\.0\.0\.1:(\d+) pair/);
  return { p, listen: Number(listening[1]), port: Number(fwd[1]) };
}

const backupArgs = (d: string, elf: string, how: '--connect' | '--join', listen: number, io: string[]): string[] =>
  ['backup', elf, how, `127.0.0.1:${listen}`, '--key-file', join(d, 'key'), '--arbiter', `file:${d}`, '--suspect-ms', SUSPECT_MS, '--connect-timeout-ms', '5000', ...io];

describe('a backup must name the primary\'s disk, forwards and hook (membership)', () => {
  it('kv, file disk: another file, no disk, another size, other forwards or a hook of its own are refused (exit 5, one line, no claim); booting and joining', async () => {
    const d = fresh();
    const disk = join(d, 'kv.img');
    zeroedDisk(disk, KV_DISK_BYTES);
    // The README's kv disk is a zeroed file: a second one made the same way is byte for byte
    // the same, so only its inode tells it apart (was: admitted, went live on it, and every
    // write acknowledged before the takeover was missing from it).
    const twin = join(d, 'kv-twin.img');
    zeroedDisk(twin, KV_DISK_BYTES);
    const small = join(d, 'small.img');
    zeroedDisk(small, 65536);
    const { p, listen, port } = await startPrimary(d, KV, `file:${disk}`, 7000);
    const net = ['--net', `udp:127.0.0.1:${port}:7000`];
    const cases: [string, string[], RegExp][] = [
      ['another file of the same size and content', ['--disk', `file:${twin}`, ...net], /^ftvm: refused: .*another disk: the backup's file is not this primary's/],
      ['no --disk', net, /^ftvm: refused: .*no disk: this primary has a --disk, the backup names none$/],
      ['a disk of another size', ['--disk', `file:${small}`, ...net], /^ftvm: refused: .*another disk: this primary's has 8192 sectors, the backup's 128$/],
      ['no --net', ['--disk', `file:${disk}`], new RegExp(`^ftvm: refused: .*other service forwards: this primary has ${port}->7000, the backup no --net`)],
      ['another guest port', ['--disk', `file:${disk}`, '--net', `udp:127.0.0.1:${port}:7001`], new RegExp(`this primary has ${port}->7000, the backup ${port}->7001`)],
      ['an --on-live the primary does not run', ['--disk', `file:${disk}`, ...net, '--on-live', 'true'], /^ftvm: refused: .*an --on-live this primary does not run/],
    ];
    for (const [name, io, line] of cases) {
      const r = ftvm(backupArgs(d, KV, '--connect', listen, io), 30_000);
      expect(r.status, `${name}:\n${r.stderr}`).toBe(5);
      expectOneLine(r.stderr, line);
      // A refused backup never ran the guest and never claimed.
      expect(r.stderr).not.toMatch(/state "replaying"|claiming/);
      expect(claims(d), name).toEqual([]);
    }
    // (Its stderr is read while this test awaits: ftvm() above blocked the event loop.)
    const refusals = (): number => (p.err().match(/primary refused backup/g) ?? []).length;
    for (const t0 = Date.now(); refusals() < cases.length && Date.now() - t0 < 5000;) await sleep(20);
    expect(refusals(), p.err()).toBe(cases.length);
    // The backup that names the same disk and forwards is admitted.
    const b = startFtvm(backupArgs(d, KV, '--connect', listen, ['--disk', `file:${disk}`, ...net]));
    await p.waitErr(/primary state \{"protected"/, 30_000);
    const kv = new KvClient({ servers: [{ host: '127.0.0.1', port }], timeoutMs: 300, maxTimeoutMs: 2000, attemptsPerServer: 20 });
    await kv.put('before', 'join');
    // The backup dies; the primary serves alone and takes only a joiner with its disk.
    b.child.kill('SIGKILL');
    await p.waitErr(/primary alone: a new backup may join/, 30_000);
    const wrong = ftvm(backupArgs(d, KV, '--join', listen, ['--disk', `file:${twin}`, ...net]), 30_000);
    expect(wrong.status, wrong.stderr).toBe(5);
    expectOneLine(wrong.stderr, /^ftvm: refused: .*another disk: the backup's file is not this primary's/);
    const joiner = startFtvm(backupArgs(d, KV, '--join', listen, ['--disk', `file:${disk}`, ...net]));
    await joiner.waitErr(/backup joined 127\.0\.0\.1:\d+ pair \S+ as /, 30_000);
    await p.waitErr(/primary re-protected/, 30_000);
    expect(await kv.get('before')).toEqual(Buffer.from('join'));
    kv.close();
    p.child.kill('SIGTERM');
    joiner.child.kill('SIGTERM');
    expect(await p.exit).toBe('0');
    expect(['0', '6']).toContain(await joiner.exit);
  }, 180_000);

  it('dns, NBD disk: the same export name on another server with other contents is refused at boot; an export the server lacks is exit 2', async () => {
    const d = fresh();
    const zone = join(d, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), zone);
    // An older copy: the same size, one record changed.
    const older = join(d, 'zone-older.img');
    copyFileSync(zone, older);
    const fd = openSync(older, 'r+');
    writeSync(fd, Buffer.alloc(1, 0x5a), 0, 1, 100);
    closeSync(fd);
    const s1 = await startNbdServer(d, zone, 'zone');
    servers.push(s1);
    const s2 = await startNbdServer(d, older, 'zone');
    servers.push(s2);
    const { p, listen, port } = await startPrimary(d, DNS, `nbd://127.0.0.1:${s1.port}/zone`, 53);
    const net = ['--net', `udp:127.0.0.1:${port}:53`];
    const other = ftvm(backupArgs(d, DNS, '--connect', listen, ['--disk', `nbd://127.0.0.1:${s2.port}/zone`, ...net]), 30_000);
    expect(other.status, other.stderr).toBe(5);
    expectOneLine(other.stderr, /^ftvm: refused: .*another disk: its first 64 KiB differ from this primary's disk/);
    const missing = ftvm(backupArgs(d, DNS, '--connect', listen, ['--disk', `nbd://127.0.0.1:${s1.port}/nozone`, ...net]), 30_000);
    expect(missing.status, missing.stderr).toBe(2);
    expectOneLine(missing.stderr, /nozone/);
    expect(claims(d)).toEqual([]);
    const b = startFtvm(backupArgs(d, DNS, '--connect', listen, ['--disk', `nbd://127.0.0.1:${s1.port}/zone`, ...net]));
    await p.waitErr(/primary state \{"protected"/, 30_000);
    p.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
    expect(await p.exit).toBe('0');
    expect(await b.exit).toBe('0');
  }, 120_000);
});

describe('a backup whose disk it could not write at go-live', () => {
  it('a read-only mount of the primary\'s disk file is refused at start (exit 2, one line), not first at a takeover', async () => {
    const probe = spawnSync('unshare', ['-m', 'true']);
    if (probe.status !== 0) throw new Error(`this test needs root and unshare (a mount namespace of its own): ${probe.stderr?.toString().trim() || probe.error?.message}`);
    const d = fresh();
    const ro = join(d, 'ro');
    mkdirSync(ro);
    const disk = join(ro, 'kv.img');
    zeroedDisk(disk, KV_DISK_BYTES);
    const { p, listen, port } = await startPrimary(d, KV, `file:${disk}`, 7000);
    // The same file through a read-only bind mount, in a mount namespace of the backup's own
    // (as a host whose shared storage is mounted read-only sees it).
    const args = backupArgs(d, KV, '--connect', listen, ['--disk', `file:${disk}`, '--net', `udp:127.0.0.1:${port}:7000`]);
    const quoted = [process.execPath, cli, ...args].map((a) => `'${a}'`).join(' ');
    const r = spawnSync('unshare', ['-m', 'sh', '-c', `mount --bind -o ro '${ro}' '${ro}' && exec ${quoted}`], { encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' });
    expect(r.status, r.stderr).toBe(2);
    expectOneLine(r.stderr, /^ftvm: .*kv\.img: on a read-only filesystem$/);
    expect(claims(d)).toEqual([]);
    expect(p.err()).not.toMatch(/backup attached/);
    p.child.kill('SIGTERM');
    expect(await p.exit).toBe('0');
  }, 60_000);
});

describe('backup --join to something that is not an ftvm primary', () => {
  it('a service that does not speak TLS is "no primary", exit 1, and the key is not blamed', async () => {
    const d = fresh();
    // An SSH server's greeting, as an operator who typed the wrong port meets one.
    const server = createServer((c) => c.end('SSH-2.0-OpenSSH_9.2\r\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const b = startFtvm(backupArgs(d, DNS, '--join', port, []));
      expect(await b.exit, b.err()).toBe('1');
      expectOneLine(b.err(), new RegExp(`^ftvm: no primary: 127\\.0\\.0\\.1:${port} is not an ftvm primary: it answered, but not with TLS`));
      expect(b.err()).not.toMatch(/wrong key/);
      expect(claims(d)).toEqual([]);
    } finally {
      server.close();
    }
  }, 60_000);
});

describe('the disk file removed while the pair runs', () => {
  it('the primary says so at once; the backup that goes live without it says so, and no write is acknowledged', async () => {
    const d = fresh();
    const disk = join(d, 'kv.img');
    zeroedDisk(disk, KV_DISK_BYTES);
    const { p, listen, port } = await startPrimary(d, KV, `file:${disk}`, 7000);
    const b = startFtvm(backupArgs(d, KV, '--connect', listen, ['--disk', `file:${disk}`, '--net', `udp:127.0.0.1:${port}:7000`]));
    await p.waitErr(/primary state \{"protected"/, 30_000);
    const kv = new KvClient({ servers: [{ host: '127.0.0.1', port }], timeoutMs: 300, maxTimeoutMs: 1000, attemptsPerServer: 30 });
    await kv.put('a', '1');
    rmSync(disk);
    await p.waitErr(/^ftvm: disk .*kv\.img was removed while this node runs/m, 10_000);
    p.child.kill('SIGKILL');
    await b.waitErr(/^ftvm: backup live without its disk: .*kv\.img: no such file/m, 30_000);
    // The guest's write fails: the client hears an error, never an acknowledgement.
    await expect(kv.put('b', '2')).rejects.toMatchObject({ status: KvStatus.IoError });
    kv.close();
    b.child.kill('SIGTERM');
    expect(await b.exit).toBe('0');
    expect(existsSync(disk)).toBe(false);
  }, 120_000);
});

describe('SIGTERM to `ftvm pair` while its primary starts', () => {
  it('stops the primary, exits 0 with one line and leaves no directory behind', async () => {
    const d = fresh();
    const tmp = join(d, 'tmp');
    mkdirSync(tmp);
    const zone = join(d, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), zone);
    const child = spawn(process.execPath, [cli, 'pair', DNS, '--disk', `file:${zone}`, '--net', `udp:127.0.0.1:${await servicePort()}:53`],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TMPDIR: tmp } });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    const exit = new Promise<string>((resolve) => child.once('exit', (code, sig) => resolve(sig ?? String(code))));
    // The pair's key and arbiter directory exist from here.
    while (!/pair\| primary pid (\d+)/.test(err)) {
      if (child.exitCode !== null) throw new Error(err);
      await sleep(5);
    }
    const primaryPid = Number(/pair\| primary pid (\d+)/.exec(err)![1]);
    expect(readdirSync(tmp).filter((f) => f.startsWith('ftvm-pair-'))).toHaveLength(1);
    child.kill('SIGTERM');
    expect(await exit, err).toBe('0');
    expect(err).toMatch(/stopped by SIGTERM while starting: the guest never ran/);
    expect(err).not.toMatch(/^ftvm:/m);
    expect(readdirSync(tmp)).toEqual([]);
    expect(alive(primaryPid)).toBe(false);
  }, 60_000);
});
