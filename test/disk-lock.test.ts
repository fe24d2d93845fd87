// One writer per disk (DESIGN §3), with real processes: a second `ftvm run` on an image in
// use is refused with one line and exit 4 and never starts its guest, the first keeps
// serving and loses no acknowledged PUT; ftvm and QEMU refuse each other on one image, as two
// QEMUs do (QEMU's byte-range image locks); and inside one process a second open is refused.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvClient } from '../runtime/clients/kv-client.js';
import { FileDisk } from '../runtime/io/disk-file.js';
import { DiskInUseError } from '../runtime/io/image-lock.js';
import { DeferredDisk } from '../runtime/io/deferred-disk.js';

const root = new URL('../', import.meta.url).pathname;
const ftvm = join(root, 'bin/ftvm.js');
const NO_QEMU = 'qemu-system-riscv32 not found on PATH: install qemu-system-misc (Debian) to test image locking against QEMU';
const hasQemu = spawnSync('qemu-system-riscv32', ['--version']).status === 0;

let dir: string;
const running: ChildProcess[] = [];
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'ftvm-lock-')); });
afterAll(() => {
  for (const p of running.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function image(name: string): string {
  const p = join(dir, name);
  writeFileSync(p, '');
  truncateSync(p, 4 << 20); // a zeroed disk is an empty kv log
  return p;
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface Guest { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> }

function start(cmd: string, args: string[]): Guest {
  const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  return { child, out: () => out, err: () => err, exited };
}

async function until(g: Guest, re: RegExp, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!re.test(g.out())) {
    if (Date.now() > deadline || g.child.exitCode !== null) throw new Error(`${what}: ${g.out()} ${g.err()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const kvFtvm = (disk: string, port: number): Guest => start(process.execPath, [ftvm, 'run', 'guests/kv/kv.elf', '--disk', `file:${disk}`, '--net', `udp:${port}:7000`]);
const kvQemu = (disk: string, port: number): Guest => start(join(root, 'guests/qemu-io.sh'), ['-d', disk, '-f', `udp:127.0.0.1:${port}-:7000`, 'guests/kv/kv.elf']);

describe('disk image locking', () => {
  it('refuses a second ftvm on one image; the first keeps every acknowledged PUT', async () => {
    const disk = image('two.img');
    const p1 = await freeUdpPort();
    const first = kvFtvm(disk, p1);
    await until(first, /kv: replayed 0 log records/, 'first guest');
    const c = new KvClient({ servers: [{ host: '127.0.0.1', port: p1 }], timeoutMs: 200 });
    try {
      await c.put('before', 'one');
      const p2 = await freeUdpPort();
      const second = kvFtvm(disk, p2);
      expect(await second.exited).toBe(4);
      expect(second.err()).toBe(`ftvm: disk ${disk} is in use by another guest (pid ${first.child.pid} node): cannot get the "write" lock\n`);
      expect(second.out()).toBe(''); // the guest never started
      await c.put('after', 'two');
      expect((await c.get('before'))?.toString()).toBe('one');
    } finally {
      c.close();
      first.child.kill('SIGINT');
    }
    expect(await first.exited).toBe(130);
    // The lock went with the process: a new guest opens the image and replays both PUTs.
    const p3 = await freeUdpPort();
    const again = kvFtvm(disk, p3);
    await until(again, /kv: replayed 2 log records, 2 keys/, 'restarted guest');
    const c2 = new KvClient({ servers: [{ host: '127.0.0.1', port: p3 }], timeoutMs: 200 });
    try {
      expect((await c2.get('after'))?.toString()).toBe('two');
    } finally {
      c2.close();
      again.child.kill('SIGINT');
    }
    expect(await again.exited).toBe(130);
  }, 60_000);

  it('refuses ftvm on an image QEMU runs, and QEMU on an image ftvm runs', async () => {
    if (!hasQemu) throw new Error(NO_QEMU);
    const disk = image('qemu.img');
    const q = kvQemu(disk, await freeUdpPort());
    try {
      await until(q, /kv: replayed 0 log records/, 'QEMU guest');
      const f = kvFtvm(disk, await freeUdpPort());
      expect(await f.exited).toBe(4);
      expect(f.err()).toMatch(new RegExp(`^ftvm: disk ${disk} is in use by another guest \\(pid ${q.child.pid} qemu-system-ris\\): cannot get the "write" lock\\n$`));
    } finally {
      q.child.kill('SIGTERM');
    }
    await q.exited;

    const port = await freeUdpPort();
    const f = kvFtvm(disk, port);
    try {
      await until(f, /kv: replayed 0 log records/, 'ftvm guest');
      const q2 = kvQemu(disk, await freeUdpPort());
      expect(await q2.exited).not.toBe(0);
      expect(q2.err()).toMatch(/Failed to get "write" lock/);
      expect(q2.err()).toMatch(/Is another process using the image/);
    } finally {
      f.child.kill('SIGINT');
    }
    expect(await f.exited).toBe(130);
  }, 60_000);

  it('refuses a second open of one image inside one process, by device and inode', async () => {
    const disk = image('inproc.img');
    const a = await FileDisk.open(disk);
    // Another path to the same file is the same image.
    const other = join(dir, 'inproc-link.img');
    spawnSync('ln', ['-s', disk, other]);
    const refused = await FileDisk.open(other).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DiskInUseError);
    expect((refused as Error).message).toBe(`disk ${other} is in use by another guest in this process (${disk})`);
    await a.close();
    const b = await FileDisk.open(other);
    await b.close();
    await b.close(); // closing twice is harmless
  });

  it('a replica not yet live opens nothing; at go-live it waits for the old primary to let go', async () => {
    const disk = image('golive.img');
    // The old primary: a guest in another process, holding the image.
    const old = kvFtvm(disk, await freeUdpPort());
    await until(old, /kv: replayed 0 log records/, 'old primary');
    const lines: string[] = [];
    const d = new DeferredDisk({ kind: 'file', path: disk }, { report: (l) => lines.push(l) });
    const openHere = () => readdirSync('/proc/self/fd').filter((fd) => { try { return readlinkSync(`/proc/self/fd/${fd}`) === disk; } catch { return false; } });
    try {
      expect(d.sectors).toBe(8192);
      expect(d.isOpen).toBe(false);
      expect(openHere()).toEqual([]); // replaying: not even opened
      // Go-live: the first request opens it, and waits while the old primary holds the lock.
      let got: Uint8Array | undefined;
      const read = d.read(0, 1).then((b) => (got = b));
      await new Promise((r) => setTimeout(r, 400));
      expect(got).toBeUndefined();
      expect(lines).toEqual([`disk ${disk} is in use by another guest (pid ${old.child.pid} node): cannot get the "write" lock; the old primary may still hold it: retrying, the guest's disk I/O waits`]);
      // The old primary dies for real: the kernel drops its lock and the new primary takes it.
      old.child.kill('SIGKILL');
      await read;
      expect(got).toEqual(new Uint8Array(512));
      expect(lines[1]).toMatch(new RegExp(`^disk ${disk} locked after \\d+ ms$`));
      // Now this process is the one writer: another guest is refused.
      const late = kvFtvm(disk, await freeUdpPort());
      expect(await late.exited).toBe(4);
      expect(late.err()).toMatch(new RegExp(`in use by another guest \\(pid ${process.pid} `));
    } finally {
      old.child.kill('SIGKILL');
      await d.close();
    }
    expect(openHere()).toEqual([]);
  }, 60_000);
});
