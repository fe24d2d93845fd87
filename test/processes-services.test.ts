// Real services protected by two processes (DESIGN §3 One writer per disk, The service moves
// with the live replica): the dns and kv guests as `ftvm primary` and `ftvm backup` children
// with a file disk and a UDP forward on one host; clients ask through a kill -9 of the
// primary. The backup must not touch the disk before go-live (the image lock says who has
// it), must bind the same port when it goes live, and must run the --on-live hook.
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkDns, DnsLoad, parseZone, zeroedDisk, zonePath } from '../runtime/demo/dns-load.js';
import { checkKv, KV_DISK_BYTES, KvLoad, readWal } from '../runtime/demo/kv-load.js';
import { KvClient } from '../runtime/clients/kv-client.js';
import { killAll, root, startFtvm, type Proc } from './helpers/cli-procs.js';
import { startNbdServer } from './nbd-server.js';
import { FileDisk } from '../runtime/io/disk-file.js';
import { servicePort } from '../runtime/faults/service-port.js';

const dnsElf = join(root, 'guests/dns/dns.elf');
const kvElf = join(root, 'guests/kv/kv.elf');
// A loaded 2-core machine stalls a process for tens of milliseconds: no spurious failover.
const SUSPECT_MS = '600';
const dirs: string[] = [];
afterAll(() => {
  killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function fresh(): string {
  const d = mkdtempSync(join(tmpdir(), 'ftvm-svc-'));
  dirs.push(d);
  writeFileSync(join(d, 'key'), 'ab'.repeat(32));
  return d;
}

/** Pids holding a POSIX lock on the file (the image lock's bytes), from /proc/locks. */
function lockHolders(file: string): number[] {
  const { ino, dev } = statSync(file);
  // /proc/locks names a file by device (major:minor, hex) and inode: an inode alone may be
  // another file's, on another device, locked by another process.
  const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  const pids = new Set<number>();
  for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
    const m = /POSIX\s+ADVISORY\s+\w+\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (m && Number(m[4]) === ino && parseInt(m[2]!, 16) === major && parseInt(m[3]!, 16) === minor) pids.add(Number(m[1]));
  }
  // A lock on a deleted file of another run whose inode this file reuses names it too: keep
  // only the processes that hold this very path open.
  const path = realpathSync(file);
  return [...pids].filter((pid) => holdsOpen(pid, path)).sort();
}

function holdsOpen(pid: number, file: string): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === file;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

interface Pair {
  primary: Proc;
  backup: Proc;
  port: number;
  instance: string;
}

/**
 * A primary with the guest's disk and a forward from a free host port below the ephemeral range, then a
 * backup naming that port: it binds it only at go-live, on this host once the primary is gone.
 */
async function startPair(d: string, elf: string, diskSpec: string, guestPort: number, extra: string[] = [], suspectMs = SUSPECT_MS): Promise<Pair> {
  const common = ['--key-file', join(d, 'key'), '--arbiter', `file:${d}`, '--suspect-ms', suspectMs, '--disk', diskSpec, ...extra];
  // Not port 0: a port from the ephemeral range could be given to dig's own socket while
  // neither node holds it (runtime/faults/service-port.ts).
  const primary = startFtvm(['primary', elf, '--listen', '127.0.0.1:0', '--net', `udp:127.0.0.1:${await servicePort()}:${guestPort}`, '--outputs', join(d, 'p.jsonl'), ...common]);
  const fwd = await primary.waitErr(/primary forwarding udp 127\.0\.0\.1:(\d+) -> guest port/);
  const listening = await primary.waitErr(/primary listening 127\.0\.0\.1:(\d+) pair (\S+)/);
  const port = Number(fwd[1]);
  const backup = startFtvm(['backup', elf, '--connect', `127.0.0.1:${listening[1]}`, '--net', `udp:127.0.0.1:${port}:${guestPort}`, '--outputs', join(d, 'b.jsonl'), ...common]);
  await primary.waitErr(/primary state \{"protected"/);
  return { primary, backup, port, instance: listening[2]! };
}

function dig(port: number, name: string, type: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('dig', ['@127.0.0.1', '-p', String(port), name, type, '+short', '+tries=1', '+time=1'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout.on('data', (b: Buffer) => (out += b.toString()));
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`dig exited with ${code}`))));
  });
}

/** dig with retries, as a resolver retries: a refused or timed-out try is tried again. */
async function digRetrying(port: number, name: string, type: string, ms = 10_000): Promise<string> {
  const t0 = Date.now();
  for (;;) {
    try {
      const out = await dig(port, name, type);
      const lines = out.split('\n').filter((l) => l !== '' && !l.startsWith(';;'));
      if (lines.length > 0) return lines.sort().join('\n');
    } catch {
      // No server (connection refused) or no answer: try again.
    }
    if (Date.now() - t0 > ms) throw new Error(`no answer to ${name} ${type} in ${ms} ms`);
    await sleep(50);
  }
}

/** An A query for `name` with id `id` (RFC 1035 §4.1), recursion not asked for. */
function aQuery(id: number, name: string): Buffer {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  const header = Buffer.from([id >> 8, id & 255, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}

/** The A addresses of a reply to `aQuery` (answers follow the one question; names compressed or not). */
function aAnswers(reply: Buffer): string[] {
  let o = 12;
  while (reply[o] !== 0) o += reply[o]! + 1;
  o += 5;
  const out: string[] = [];
  for (let n = reply.readUInt16BE(6); n > 0; n--) {
    o = (reply[o]! & 0xc0) === 0xc0 ? o + 2 : (() => { while (reply[o] !== 0) o += reply[o]! + 1; return o + 1; })();
    const type = reply.readUInt16BE(o);
    const len = reply.readUInt16BE(o + 8);
    if (type === 1 && len === 4) out.push([...reply.subarray(o + 10, o + 14)].join('.'));
    o += 10 + len;
  }
  return out.sort();
}

/** The longest silence the clients saw (the failover, as they measure it). */
const maxGap = (times: number[]): number => times.reduce((g, t, i) => (i === 0 ? 0 : Math.max(g, t - times[i - 1]!)), 0);

const envOf = (file: string): Record<string, string> =>
  Object.fromEntries(readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

async function waitFile(file: string, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!existsSync(file) || readFileSync(file, 'utf8') === '') {
    if (Date.now() - t0 > ms) throw new Error(`${file} never written`);
    await sleep(20);
  }
}

describe('services across processes: kill -9 of the primary under client load', () => {
  it('dns: every query answered right, the backup binds the same port, --on-live runs with the pair in its environment', async () => {
    const d = fresh();
    const disk = join(d, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), disk);
    // The hook records its environment; the primary's start hook fails, which must not matter.
    const hook = `env | grep -E '^FTVM_(PAIR_ID|GENERATION|ROLE|EVENT)=' | sort > ${d}/hook-$FTVM_ROLE-$FTVM_EVENT; [ "$FTVM_EVENT" != start ] || { echo moving nothing; exit 3; }`;
    const { primary, backup, port, instance } = await startPair(d, dnsElf, `file:${disk}`, 53, ['--on-live', hook]);
    expect(await digRetrying(port, 'ns2.example.test', 'A')).toBe('192.0.2.54');
    expect(lockHolders(disk)).toEqual([primary.child.pid]);

    const load = new DnsLoad({ port, seed: 7, concurrency: 3 });
    load.start();
    // dig beside the resolvers, asking again (as a stub resolver does) when a try fails: on one
    // host the port is closed between the kill and the bind, which dig takes as a refusal.
    const digs: { answer: string; tries: number }[] = [];
    let digging = true;
    const digLoop = (async () => {
      while (digging) {
        let tries = 0;
        let answer = '';
        const t0 = Date.now();
        while (answer === '' && Date.now() - t0 < 20_000) {
          tries++;
          answer = await dig(port, 'www.example.test', 'A').then((out) => out.split('\n').filter(Boolean).sort().join(' '), () => '');
          if (answer === '') await sleep(50);
        }
        digs.push({ answer, tries });
      }
    })();
    while (load.answered < 100) await sleep(5);
    // The backup replays every query and never opened the zone disk.
    expect(lockHolders(disk)).toEqual([primary.child.pid]);
    primary.child.kill('SIGKILL');
    const killedAt = performance.now();
    expect(await primary.exit).toBe('SIGKILL');
    await backup.waitErr(/backup forwarding udp 127\.0\.0\.1:(\d+) -> guest port 53/);
    const answeredAtKill = load.answered;
    while (load.answered < answeredAtKill + 100 && performance.now() - killedAt < 20_000) await sleep(5);
    await load.stop();
    digging = false;
    await digLoop;
    expect(digs.length).toBeGreaterThan(2);
    expect(digs.filter((g) => g.answer !== '192.0.2.80 192.0.2.81'), JSON.stringify(digs)).toEqual([]);
    if (process.env.FTVM_SVC_MEASURE) console.log(`dns: ${digs.length} digs (${digs.reduce((n, g) => n + g.tries, 0)} tries), ${load.records.length} queries, ${load.retries} retries, longest gap between answers ${maxGap(load.answerTimes).toFixed(0)} ms`);
    expect(await digRetrying(port, 'www.example.test', 'A')).toBe('192.0.2.80\n192.0.2.81');

    const check = checkDns(parseZone(readFileSync(zonePath(), 'utf8')), load.records);
    expect(check.errors).toEqual([]);
    expect(check.unanswered).toBe(0);
    expect(check.wrong).toBe(0);
    expect(load.answered).toBeGreaterThanOrEqual(answeredAtKill + 100);
    expect(backup.err()).toMatch(/backup took over disk file:.* and the service ports in/);
    expect(lockHolders(disk)).toEqual([backup.child.pid]);

    // --on-live: the primary's at start (failed: reported, the pair ran on), the backup's at go-live.
    const started = envOf(join(d, 'hook-primary-start'));
    expect(started).toEqual({ FTVM_EVENT: 'start', FTVM_GENERATION: '1', FTVM_PAIR_ID: instance, FTVM_ROLE: 'primary' });
    expect(primary.err()).toMatch(/^on-live\| moving nothing$/m);
    expect(primary.err(), primary.err()).toMatch(/on-live start: hook failed \(exit 3\) after \d+ ms; the node serves on/);
    await waitFile(join(d, 'hook-backup-go-live'));
    expect(envOf(join(d, 'hook-backup-go-live'))).toEqual({ FTVM_EVENT: 'go-live', FTVM_GENERATION: '2', FTVM_PAIR_ID: instance, FTVM_ROLE: 'backup' });
    await backup.waitErr(/on-live go-live: hook exited 0 after \d+ ms/);

    // A clean stop of the live node: exit 0, disk flushed, lock released.
    backup.child.kill('SIGTERM');
    expect(await backup.exit).toBe('0');
    expect(backup.err()).toMatch(/stopped by SIGTERM: every output of its guest was released/);
    expect(backup.err()).toMatch(/disk file:.*zone\.img flushed/);
    expect(lockHolders(disk)).toEqual([]);
    // Every reply the guest sent found its client: those to the old primary's clients too.
    expect(backup.err()).toMatch(/net \d+ datagrams in, \d+ out/);
    expect(backup.err()).not.toMatch(/UDP to an unmapped port/);
  }, 90_000);

  it('dns: the reply the dead primary never released reaches its client from the new primary, asked once', async () => {
    const d = fresh();
    const disk = join(d, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), disk);
    // Long enough that the primary cannot give up on its stopped backup before it is killed.
    const { primary, backup, port } = await startPair(d, dnsElf, `file:${disk}`, 53, [], '3000');
    expect(await digRetrying(port, 'ns1.example.test', 'A')).toBe('192.0.2.53');
    // The backup stops acknowledging: the primary logs the query, its guest answers, and the
    // output rule holds the answer (DESIGN §3) until the primary dies with it.
    backup.child.kill('SIGSTOP');
    const client = createSocket('udp4');
    const replies: Buffer[] = [];
    client.on('message', (b) => replies.push(b));
    try {
      await new Promise<void>((resolve, reject) => client.send(aQuery(0x5a17, 'ns2.example.test'), port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
      await sleep(400);
      expect(replies).toEqual([]);
      primary.child.kill('SIGKILL');
      expect(await primary.exit).toBe('SIGKILL');
      backup.child.kill('SIGCONT');
      // Never asked again: only the re-issued reply can answer, through the mapping the backup
      // learned from the logged frame.
      const t0 = Date.now();
      while (replies.length === 0 && Date.now() - t0 < 15_000) await sleep(20);
      expect(replies.length, backup.err()).toBeGreaterThan(0);
      expect(replies[0]!.readUInt16BE(0)).toBe(0x5a17);
      expect(aAnswers(replies[0]!)).toEqual(['192.0.2.54']);
      // The node says so once its ports are open, which may be a moment after the reply left.
      const said = /backup knew [1-9]\d* client mappings from the log; sent \d+ replies held until the ports were bound/;
      const t1 = Date.now();
      while (!said.test(backup.err()) && Date.now() - t1 < 5_000) await sleep(20);
      expect(backup.err()).toMatch(said);
    } finally {
      client.close();
    }
    backup.child.kill('SIGTERM');
    expect(await backup.exit).toBe('0');
    expect(backup.err()).not.toMatch(/UDP to an unmapped port/);
  }, 90_000);

  it('kv: acknowledged PUTs survive, none applied twice; the backup opens the disk only at go-live', async () => {
    const d = fresh();
    const disk = join(d, 'kv.img');
    zeroedDisk(disk, KV_DISK_BYTES);
    const { primary, backup, port } = await startPair(d, kvElf, `file:${disk}`, 7000);
    const probe = new KvClient({ servers: [{ host: '127.0.0.1', port }], timeoutMs: 100, maxTimeoutMs: 400, attemptsPerServer: 40 });
    try {
      await probe.get('ready?');
    } finally {
      probe.close();
    }
    const load = new KvLoad({ port, seed: 11 });
    load.start();
    while (load.acked.size < 40) await sleep(5);
    // One writer per disk: the primary holds the image; the replaying backup never opened it.
    expect(lockHolders(disk)).toEqual([primary.child.pid]);
    expect(backup.err()).not.toMatch(/took over|in use/);
    primary.child.kill('SIGKILL');
    const ackedAtKill = load.acked.size;
    expect(await primary.exit).toBe('SIGKILL');
    await backup.waitErr(/backup took over disk file:.*kv\.img and the service ports in/);
    const t0 = performance.now();
    while (load.acked.size < ackedAtKill + 40 && performance.now() - t0 < 20_000) await sleep(5);
    await load.stop();
    if (process.env.FTVM_SVC_MEASURE) console.log(`kv: ${load.puts} PUTs, ${load.acked.size} acknowledged, ${load.retries} retries, longest gap between answers ${maxGap(load.answerTimes).toFixed(0)} ms`);
    expect(lockHolders(disk)).toEqual([backup.child.pid]);

    // Read every acknowledged key back from the new primary, then stop it cleanly.
    const reader = new KvClient({ servers: [{ host: '127.0.0.1', port }], timeoutMs: 100, maxTimeoutMs: 400, attemptsPerServer: 40 });
    const readBack = new Map<string, string | undefined>();
    try {
      for (const key of load.acked.keys()) readBack.set(key, (await reader.get(key))?.toString());
    } finally {
      reader.close();
    }
    backup.child.kill('SIGTERM');
    expect(await backup.exit).toBe('0');
    expect(backup.err()).toMatch(/disk file:.*kv\.img flushed/);

    const check = checkKv(load, readBack, readWal(readFileSync(disk)));
    expect(check.errors, check.lines.join('\n')).toEqual([]);
    expect(check.ok).toBe(true);
    expect(load.acked.size).toBeGreaterThanOrEqual(ackedAtKill + 40);
  }, 90_000);

  it('dns on an NBD export: only the live replica is connected to it', async () => {
    const d = fresh();
    const image = join(d, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), image);
    const nbd = await startNbdServer(d, image, 'zone');
    // nbd-server forks one child per client: the clients connected now.
    const clients = (): number => spawnSync('pgrep', ['-P', String(nbd.pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).length;
    try {
      const { primary, backup, port } = await startPair(d, dnsElf, `nbd://127.0.0.1:${nbd.port}/zone`, 53);
      expect(await digRetrying(port, 'www.example.test', 'A')).toBe('192.0.2.80\n192.0.2.81');
      // The backup read the export's size at start and let go; the primary is the one client.
      const t0 = Date.now();
      while (clients() !== 1 && Date.now() - t0 < 5000) await sleep(50);
      expect(clients()).toBe(1);
      primary.child.kill('SIGKILL');
      expect(await primary.exit).toBe('SIGKILL');
      expect(await digRetrying(port, 'hello.example.test', 'TXT')).toBe('"hello from ftvm" "second string"');
      await backup.waitErr(/backup took over disk nbd:\/\/127\.0\.0\.1:\d+\/zone and the service ports in/);
      while (clients() !== 1 && Date.now() - t0 < 10_000) await sleep(50);
      expect(clients()).toBe(1);
      backup.child.kill('SIGTERM');
      expect(await backup.exit).toBe('0');
      expect(backup.err()).toMatch(/disk nbd:\/\/.*\/zone flushed/);
    } finally {
      await nbd.stop();
    }
  }, 90_000);

  it('refuses what cannot work: a backup without a service port, a primary on a disk in use', async () => {
    const d = fresh();
    const common = ['--key-file', join(d, 'key'), '--arbiter', `file:${d}`];
    const b = startFtvm(['backup', dnsElf, '--connect', '127.0.0.1:9', '--net', 'udp:127.0.0.1:0:53', ...common]);
    expect(await b.exit).toBe('2');
    expect(b.err()).toMatch(/^ftvm: --net udp:127\.0\.0\.1:0:53: a backup binds its service port at go-live; name the port the primary bound, not 0$/m);
    // One writer per disk: this test process holds the image, as another guest would.
    const disk = join(d, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), disk);
    const held = await FileDisk.open(disk);
    try {
      const p = startFtvm(['primary', dnsElf, '--listen', '127.0.0.1:0', '--disk', `file:${disk}`, ...common]);
      expect(await p.exit).toBe('4');
      expect(p.err()).toMatch(new RegExp(`^ftvm: disk ${disk} is in use by another guest \\(pid ${process.pid} `, 'm'));
      expect(p.err()).not.toMatch(/listening/);
    } finally {
      await held.close();
    }
  }, 30_000);

  it('a backup gone live beside a primary that is stopped, not dead, waits for the disk and the port; SIGTERM ends the wait', async () => {
    const d = fresh();
    const disk = join(d, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), disk);
    const { primary, backup } = await startPair(d, dnsElf, `file:${disk}`, 53);
    // Suspected, not dead: the backup wins the arbiter, but the image and the port are still held.
    primary.child.kill('SIGSTOP');
    try {
      await backup.waitErr(/backup state live at icount/);
      await backup.waitErr(new RegExp(`disk ${disk} is in use by another guest \\(pid ${primary.child.pid} .*retrying, the guest's disk I/O waits`));
      await backup.waitErr(/udp 127\.0\.0\.1:\d+ is in use: retrying/);
      // One writer per disk: still the primary's alone.
      expect(lockHolders(disk)).toEqual([primary.child.pid]);
      const t0 = Date.now();
      backup.child.kill('SIGTERM');
      expect(['0', '6']).toContain(await backup.exit);
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(backup.err()).not.toMatch(/took over disk/);
    } finally {
      primary.child.kill('SIGKILL');
    }
    expect(await primary.exit).toBe('SIGKILL');
  }, 60_000);
});
